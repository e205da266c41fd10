"""The Mailings pages: Wagtail's model views for drafts, plus preview, send and results.

The list, create, edit, copy and delete pages are Wagtail's own
(:class:`MailingViewSet`); a sent mailing is no longer editable. The extra
pages check the permission of their step (see :mod:`.access`) and
leave the work to :mod:`wagtail_maillog.mailings`.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured, PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.shortcuts import get_object_or_404, redirect
from django.template.loader import render_to_string
from django.urls import path, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.functional import cached_property
from django.utils.html import escape
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from django.views.decorators.clickjacking import xframe_options_sameorigin
from django.views.generic import FormView, TemplateView, View
from wagtail.admin import messages
from wagtail.admin.panels import FieldPanel, MultiFieldPanel, ObjectList, PageChooserPanel
from wagtail.admin.ui.tables import Column, DateColumn
from wagtail.admin.views.generic import EditView, IndexView
from wagtail.admin.views.generic.base import WagtailAdminTemplateMixin
from wagtail.admin.viewsets.model import ModelViewSet

from ..admin.menu import MAIL_MENU_HOOK as MENU_HOOK
from ..mailings import audiences, content, results, sending
from ..models import AddressStatus, Mailing, MailingState
from ..models.outbox import CANCELLABLE_STATES
from ..outbox import access as outbox_access
from ..outbox import connectors
from ..templatetags.maillog_tags import badge
from . import access
from .forms import MailingForm, SendForm

try:  # Wagtail 8 registers permission policies per model
    from wagtail.permissions import register_permission_policy
except ImportError:  # Wagtail 7.4: the viewset's property is the policy
    register_permission_policy = None

STATE_LOOK = {
    MailingState.DRAFT: ("edit", "neutral"),
    MailingState.SCHEDULED: ("time", "waiting"),
    MailingState.STARTING: ("spinner", "waiting"),
    MailingState.QUEUING: ("spinner", "waiting"),
    MailingState.QUEUED: ("spinner", "waiting"),
    MailingState.SENT: ("success", "positive"),
    MailingState.CANCELLED: ("cross", "neutral"),
    MailingState.FAILED: ("warning", "critical"),
}


def state_badge(mailing: Mailing) -> str:
    return badge(
        mailing.state,
        MailingState,
        STATE_LOOK.get(mailing.state, ("help", "neutral")),
        title=mailing.error,
        kind="mailing-state",
    )


def _cancellable(mailing: Mailing) -> bool:
    """Not started yet, still queuing, or with mail still waiting in the outbox."""
    if mailing.state in (MailingState.SCHEDULED, MailingState.STARTING, MailingState.QUEUING):
        return True
    return (
        mailing.state == MailingState.QUEUED
        and sending.outbox_items_of(mailing).filter(state__in=CANCELLABLE_STATES).exists()
    )


def _person(user: Any) -> str:
    if user is None:
        return ""
    return user.get_full_name() or user.get_username()


def _url(name: str, mailing: Mailing) -> str:
    return reverse(f"wagtail_maillog_mailings:{name}", args=[mailing.pk])


class StateColumn(Column):
    cell_template_name = "wagtail_maillog/mailings/state_cell.html"

    def get_cell_context_data(self, instance: Any, parent_context: Any) -> dict[str, Any]:
        context = super().get_cell_context_data(instance, parent_context)
        context["badge"] = state_badge(instance)
        return context


class MailingIndexView(IndexView):
    def get_edit_url(self, instance: Mailing) -> str:
        return _url("overview", instance)


class MailingEditView(EditView):
    """Only drafts can be edited: what was sent stays what it was."""

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not self.permission_policy.user_has_permission(request.user, "change"):
            raise PermissionDenied  # before the lookup: no hint which mailings exist
        mailing = get_object_or_404(Mailing, pk=kwargs.get("pk"))
        if not mailing.is_draft:
            messages.warning(request, _("A mailing that was sent can no longer be edited."))
            return redirect(_url("overview", mailing))
        return super().dispatch(request, *args, **kwargs)


# ---- pages of one mailing -------------------------------------------------------


class MailingMixin(WagtailAdminTemplateMixin):
    """Finds the mailing in the URL and checks the permission of the page."""

    request: HttpRequest
    kwargs: dict[str, Any]
    header_icon = "mail"

    def allowed(self, user: Any) -> bool:
        raise NotImplementedError

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not self.allowed(request.user):
            raise PermissionDenied
        return super().dispatch(request, *args, **kwargs)  # type: ignore[misc]

    @cached_property
    def mailing(self) -> Mailing:
        return get_object_or_404(Mailing, pk=self.kwargs["pk"])

    def get_page_title(self) -> str:
        return str(self.page_title) if getattr(self, "page_title", "") else self.mailing.subject

    def get_page_subtitle(self) -> str:
        return self.mailing.subject if getattr(self, "page_title", "") else ""

    def get_breadcrumbs_items(self) -> list[dict[str, Any]]:
        items = [
            {"url": reverse("wagtailadmin_home"), "label": _("Home")},
            {"url": reverse("wagtail_maillog_mailings:index"), "label": _("Mailings")},
        ]
        if getattr(self, "page_title", ""):
            items.append({"url": _url("overview", self.mailing), "label": self.mailing.subject})
            items.append({"url": "", "label": str(self.page_title)})
        else:
            items.append({"url": "", "label": self.mailing.subject})
        return items


#: The order of the reasons a member is left out: no address, not asked yet, not
#: confirmed yet, then the problems as :class:`AddressStatus` lists them; shared last.
REASON_ORDER = [
    audiences.NO_ADDRESS,
    audiences.NOT_KNOWN,
    *(s.value for s in AddressStatus if s != AddressStatus.CONFIRMED),
    audiences.DUPLICATE,
]


def left_out(counts: dict[str, int]) -> list[tuple[str, int]]:
    """``(reason, count)`` of the members left out, in :data:`REASON_ORDER` (a reason
    it does not know after those, by key), none with a count of 0."""

    def key(reason: str) -> tuple[int, str]:
        try:
            return REASON_ORDER.index(reason), ""
        except ValueError:
            return len(REASON_ORDER), reason

    return [
        (audiences.reason_label(k), n)
        for k, n in sorted(counts.items(), key=lambda i: key(i[0]))
        if n
    ]


def progress_context(mailing: Mailing, user: Any) -> dict[str, Any]:
    summary = results.summary(mailing)
    results.settle(mailing, summary)  # "sending" → "sent" as soon as no recipient waits
    return {
        "mailing": mailing,
        "summary": summary,
        "busy": results.is_busy(mailing, summary),
        "problems": results.problem_recipients(mailing),
        "skipped": left_out(mailing.skipped or {}),
        "state_badge": state_badge(mailing),
        "refresh_url": _url("refresh", mailing),
        "can_refresh": access.can_view_results(user),
        **_held(mailing, user),
    }


def _held(mailing: Mailing, user: Any) -> dict[str, Any]:
    """Interrupted batches, with the outbox's own Retry / Cancel (and permissions)."""
    if not outbox_access.can_view_outbox(user):
        return {}
    return {
        "held": results.held_batches(mailing, outbox_access.visible_outbox(user)),
        "held_may_retry": user.has_perm(outbox_access.RETRY),
        "held_may_cancel": user.has_perm(outbox_access.CANCEL),
    }


class OverviewView(MailingMixin, TemplateView):
    """A mailing at a glance: what it is, what can be done next, and how it is doing."""

    template_name = "wagtail_maillog/mailings/overview.html"

    def allowed(self, user: Any) -> bool:
        return access.can_see_mailings(user)

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        mailing, user = self.mailing, self.request.user
        audience = audiences.get(mailing.audience)
        context.update(
            mailing=mailing,
            state_badge=state_badge(mailing),
            audience_label=audience.label if audience else mailing.audience,
            sender_name=_person(mailing.sent_by),
            canceller_name=_person(mailing.cancelled_by),
            connector_label=mailing.connector
            or _("Default (%(name)s)") % {"name": connectors.default_name()},
            can_edit=mailing.is_draft and user.has_perm("wagtail_maillog.change_mailing"),
            can_preview=access.can_preview(user),
            can_send=mailing.is_draft and access.can_send(user),
            can_cancel=access.can_send(user) and _cancellable(mailing),
            can_view_results=access.can_view_results(user),
            edit_url=reverse("wagtail_maillog_mailings:edit", args=[mailing.pk]),
            preview_url=_url("preview", mailing),
            send_url=_url("send", mailing),
            cancel_url=_url("cancel", mailing),
            progress_url=_url("progress", mailing),
        )
        if context["can_view_results"] and not mailing.is_draft:
            context.update(progress_context(mailing, user))
        return context


class ProgressView(MailingMixin, View):
    """The results block alone, for the page to poll while the mailing goes out."""

    def allowed(self, user: Any) -> bool:
        return access.can_view_results(user)

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return render_progress(request, self.mailing)


def render_progress(request: HttpRequest, mailing: Mailing) -> HttpResponse:
    mailing.refresh_from_db()
    context = progress_context(mailing, request.user)
    html = render_to_string("wagtail_maillog/mailings/progress.html", context, request=request)
    return HttpResponse(html)


class RefreshView(MailingMixin, View):
    """ "Update results": start the background task, then go on showing the page."""

    http_method_names = ["post"]

    def allowed(self, user: Any) -> bool:
        return access.can_view_results(user)

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        started = results.request_refresh(self.mailing)
        if request.headers.get("x-requested-with") == "fetch":
            return render_progress(request, self.mailing)
        if started:
            messages.success(request, _("Updating the results in the background."))
        else:
            messages.warning(request, _("The results are being updated already."))
        return redirect(_url("overview", self.mailing))


class PreviewView(MailingMixin, TemplateView):
    """Who will get it (and who not, and why), and how it looks in HTML and text."""

    template_name = "wagtail_maillog/mailings/preview.html"
    page_title = gettext_lazy("Preview")

    def allowed(self, user: Any) -> bool:
        return access.can_preview(user)

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        """A page body the user may not see, or that became private, is not shown."""
        mailing = self.mailing
        refusal = mailing.page_id and content.page_refusal(mailing.page, request.user)
        if refusal:
            messages.error(request, _("No preview: %(reason)s") % {"reason": refusal})
            return redirect(_url("overview", mailing))
        envelope = content.envelope_refusal(mailing)
        if envelope:  # the preview shows the body; testing and sending are refused
            messages.warning(request, envelope)
        return super().get(request, *args, **kwargs)

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        mailing, user = self.mailing, self.request.user
        audience = audiences.get(mailing.audience)
        breakdown = audience.breakdown() if audience else {}
        receive = audience.distinct_confirmed() if audience else 0
        confirmed = breakdown.get("confirmed", 0)
        skipped = left_out({k: n for k, n in breakdown.items() if k != "confirmed"})
        if confirmed > receive:
            skipped.append((audiences.reason_label(audiences.DUPLICATE), confirmed - receive))
        built = content.build(mailing)
        values = sample_values(user)
        context.update(
            mailing=mailing,
            audience_label=audience.label if audience else mailing.audience,
            members=sum(breakdown.values()),
            receive=receive,
            skipped=skipped,
            subject=content.fill(built.subject, values),
            text=content.fill(built.text, values),
            html_url=_url("preview_html", mailing),
            test_url=_url("test", mailing),
            can_send=mailing.is_draft and access.can_send(user),
            send_url=_url("send", mailing),
            overview_url=_url("overview", mailing),
            user_email=getattr(user, "email", ""),
        )
        return context


def sample_values(user: Any) -> dict[str, str]:
    name = content.one_line(
        (user.get_full_name() if hasattr(user, "get_full_name") else "") or str(user)
    )
    return {
        "name": name,
        "email": getattr(user, "email", "") or "member@example.com",
        "unsubscribe_url": sending.preview_unsubscribe_url(),
    }


class PreviewHtmlView(MailingMixin, View):
    """The HTML body alone, shown in a sandboxed frame of the preview page."""

    def allowed(self, user: Any) -> bool:
        return access.can_preview(user)

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        mailing = self.mailing
        refusal = mailing.page_id and content.page_refusal(mailing.page, request.user)
        if refusal:
            response = HttpResponseForbidden(escape(refusal))
        else:
            html = content.fill(content.build(mailing).html, sample_values(request.user), True)
            response = HttpResponse(html)
        response["Content-Security-Policy"] = "sandbox; script-src 'none'"
        return response


class SendTestView(MailingMixin, View):
    http_method_names = ["post"]

    def allowed(self, user: Any) -> bool:
        return access.can_preview(user)

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            address = sending.send_test(self.mailing, request.user)
        except content.Refused as exc:
            messages.error(request, _("The test was not sent. %(reason)s") % {"reason": exc})
            return redirect(_url("overview", self.mailing))
        except (sending.MailingError, ImproperlyConfigured) as exc:
            messages.error(request, _("The test was not sent: %(error)s") % {"error": exc})
        else:
            messages.success(request, _("A test was sent to %(address)s.") % {"address": address})
        return redirect(_url("preview", self.mailing))


class SendView(MailingMixin, FormView):
    """Send now or at a time: asks first, says how many members will get it."""

    template_name = "wagtail_maillog/mailings/send.html"
    form_class = SendForm
    page_title = gettext_lazy("Send")

    def allowed(self, user: Any) -> bool:
        return access.can_send(user)

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.user.is_authenticated and self.allowed(request.user):
            mailing = get_object_or_404(Mailing, pk=kwargs["pk"])
            if not mailing.is_draft:
                messages.warning(request, _("This mailing was sent already."))
                return redirect(_url("overview", mailing))
            # Checked again here: the draft may be older than the site's rules (an old
            # sender), or its page may have become private since it was saved.
            refusal = content.refusal(mailing, request.user)
            if refusal:
                messages.error(
                    request, _("This mailing cannot be sent. %(reason)s") % {"reason": refusal}
                )
                return redirect(_url("overview", mailing))
        return super().dispatch(request, *args, **kwargs)

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        audience = audiences.get(self.mailing.audience)
        context.update(
            mailing=self.mailing,
            audience_label=audience.label if audience else self.mailing.audience,
            receive=audience.distinct_confirmed() if audience else 0,
            preview_url=_url("preview", self.mailing),
            overview_url=_url("overview", self.mailing),
        )
        return context

    def form_valid(self, form: SendForm) -> HttpResponse:
        try:
            mailing = sending.send(
                self.mailing, user=self.request.user, send_at=form.cleaned_data["send_at"]
            )
        except (sending.MailingError, content.Refused, ImproperlyConfigured) as exc:
            messages.error(self.request, _("Not sent: %(error)s") % {"error": exc})
            return redirect(_url("overview", self.mailing))
        if mailing.state == MailingState.SCHEDULED:
            messages.success(
                self.request,
                _("“%(subject)s” will be sent at %(when)s.")
                % {
                    "subject": mailing.subject,
                    "when": date_format(
                        timezone.localtime(mailing.send_at), "SHORT_DATETIME_FORMAT"
                    ),
                },
            )
        else:
            messages.success(
                self.request, _("“%(subject)s” is being sent.") % {"subject": mailing.subject}
            )
        return redirect(_url("overview", mailing))


class CancelView(MailingMixin, TemplateView):
    template_name = "wagtail_maillog/mailings/cancel.html"
    page_title = gettext_lazy("Cancel")

    def allowed(self, user: Any) -> bool:
        return access.can_send(user)

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context.update(
            mailing=self.mailing,
            waiting=sending.outbox_items_of(self.mailing).count(),
            overview_url=_url("overview", self.mailing),
        )
        return context

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        before = self.mailing.state
        taken_out = sending.cancel(self.mailing, user=request.user)
        self.mailing.refresh_from_db()
        if self.mailing.state == MailingState.CANCELLED and before != MailingState.CANCELLED:
            messages.success(request, _("The mailing was cancelled."))
        if taken_out:
            messages.success(
                request,
                ngettext(
                    "%(count)d waiting mail was taken out of the outbox.",
                    "%(count)d waiting mails were taken out of the outbox.",
                    taken_out,
                )
                % {"count": taken_out},
            )
        elif self.mailing.state != MailingState.CANCELLED:
            messages.warning(request, _("Nothing was waiting to be cancelled."))
        return redirect(_url("overview", self.mailing))


# ---- the viewsets -------------------------------------------------------------


class MailingViewSet(ModelViewSet):
    model = Mailing
    icon = "mail"
    menu_label = gettext_lazy("Mailings")
    menu_name = "mailings"
    menu_order = 400
    menu_hook = MENU_HOOK
    url_prefix = "maillog/mailings"
    url_namespace = "wagtail_maillog_mailings"
    index_view_class = MailingIndexView
    edit_view_class = MailingEditView
    copy_view_enabled = True
    search_fields = ["subject"]
    list_filter = ["state"]
    list_display = [
        "subject",
        StateColumn("state", label=gettext_lazy("State")),
        Column("queued_count", label=gettext_lazy("Recipients")),
        DateColumn("send_at", label=gettext_lazy("Sent / scheduled")),
        DateColumn("created_at", label=gettext_lazy("Created")),
    ]
    edit_handler = ObjectList(
        [
            MultiFieldPanel(
                [FieldPanel("subject"), FieldPanel("from_email"), FieldPanel("reply_to")],
                heading=gettext_lazy("Envelope"),
            ),
            FieldPanel("body"),
            PageChooserPanel("page"),
            MultiFieldPanel(
                [FieldPanel("audience"), FieldPanel("connector")],
                heading=gettext_lazy("Audience"),
            ),
        ],
        base_form_class=MailingForm,
    )

    if register_permission_policy is None:

        @property
        def permission_policy(self) -> access.MailingPermissionPolicy:  # type: ignore[override]
            return access.MailingPermissionPolicy(Mailing)

    def on_register(self) -> None:
        if register_permission_policy is not None:
            register_permission_policy(
                Mailing, access.MailingPermissionPolicy(Mailing), exact_class=True
            )
        super().on_register()

    def get_urlpatterns(self) -> list[Any]:
        return [
            *super().get_urlpatterns(),
            path("<int:pk>/", OverviewView.as_view(), name="overview"),
            path("<int:pk>/progress/", ProgressView.as_view(), name="progress"),
            path("<int:pk>/refresh/", RefreshView.as_view(), name="refresh"),
            path("<int:pk>/preview/", PreviewView.as_view(), name="preview"),
            path(
                "<int:pk>/preview/html/",
                xframe_options_sameorigin(PreviewHtmlView.as_view()),
                name="preview_html",
            ),
            path("<int:pk>/test/", SendTestView.as_view(), name="test"),
            path("<int:pk>/send/", SendView.as_view(), name="send"),
            path("<int:pk>/cancel/", CancelView.as_view(), name="cancel"),
        ]
