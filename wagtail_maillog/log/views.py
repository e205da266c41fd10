"""The mail log pages: the list, one message, resend, cancel, export."""

from __future__ import annotations

from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from django.views.generic import TemplateView
from wagtail.admin import messages
from wagtail.admin.admin_url_finder import AdminURLFinder
from wagtail.admin.paginator import WagtailPaginator
from wagtail.admin.views.generic.base import BaseListingView, WagtailAdminTemplateMixin
from wagtail.admin.widgets.button import Button

from .. import actions
from ..admin.pagination import CappedPaginator
from ..conf import get_setting
from ..export import lines as export_lines
from ..export import rows as export_rows
from ..models import Event, Message, Recipient
from ..outbox.access import CANCEL as OUTBOX_CANCEL
from ..outbox.access import COUNT_ATTRIBUTE as OUTBOX_COUNT_ATTRIBUTE
from ..outbox.access import RETRY, can_view_outbox, visible_outbox
from ..sources import source_label
from ..status import CANCELLABLE, OPENED_CAVEAT
from .access import CANCEL, RESEND, can_view_log, visible_messages, visible_recipients
from .filters import MailLogFilterSet
from .search import search_recipients
from .tables import MailLogTable

ORDERINGS = {
    "created_at": ("created_at", "pk"),
    "-created_at": ("-created_at", "-pk"),
    "address": ("address", "-created_at", "-pk"),
    "-address": ("-address", "-created_at", "-pk"),
    "status": ("status", "-created_at", "-pk"),
    "-status": ("-status", "-created_at", "-pk"),
}


class LogAccessMixin:
    """Only users who may view the log get in (403 otherwise)."""

    request: HttpRequest

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not can_view_log(request.user):
            raise PermissionDenied
        return super().dispatch(request, *args, **kwargs)  # type: ignore[misc]


class MailLogIndexView(LogAccessMixin, BaseListingView):
    """The mail log: one row per recipient, newest first."""

    page_title = gettext_lazy("Mail log")
    header_icon = "mail"
    index_url_name = "wagtail_maillog:index"
    index_results_url_name = "wagtail_maillog:index_results"
    template_name = "wagtail_maillog/index.html"
    bulk_model_name = "recipient"
    select_all_label = gettext_lazy("Select all mail in listing")
    results_template_name = "wagtail_maillog/index_results.html"
    filterset_class = MailLogFilterSet
    is_searchable = True
    default_ordering = "-created_at"
    paginate_by = 50
    paginator_class = CappedPaginator
    verbose_name = gettext_lazy("mail")
    verbose_name_plural = gettext_lazy("mails")
    model = Recipient

    def get_valid_orderings(self) -> list[str]:
        return list(ORDERINGS)

    def order_queryset(self, queryset: QuerySet[Recipient]) -> QuerySet[Recipient]:
        return queryset.order_by(*ORDERINGS.get(self.ordering, ORDERINGS["-created_at"]))

    def get_base_queryset(self) -> QuerySet[Recipient]:
        return visible_recipients(self.request.user).select_related(
            "message", "message__content_type"
        )

    def search_queryset(self, queryset: QuerySet[Recipient]) -> QuerySet[Recipient]:
        return search_recipients(queryset, self.search_query)

    def get_paginator(self, *args: Any, **kwargs: Any) -> CappedPaginator:
        paginator = super().get_paginator(*args, **kwargs)
        if not self.results_only and can_view_outbox(self.request.user):
            # The Mail menu's outbox badge, counted with the page's rows (see get_context_data).
            paginator.also_count["outbox"] = visible_outbox(self.request.user)
        return paginator

    def get_table(self, object_list: Any) -> MailLogTable:
        return MailLogTable(list(object_list), orderable=True, user=self.request.user)

    def export_url(self, fmt: str) -> str:
        """The listing's URL with its filters, search and ordering, and ``export=fmt``."""
        params = self.request.GET.copy()
        for key in ("p", "_w_filter_fragment", "export"):
            params.pop(key, None)
        params["export"] = fmt
        return f"{reverse(self.index_url_name)}?{params.urlencode()}"

    @cached_property
    def header_more_buttons(self) -> list[Button]:
        """The exports, in the header's "Actions" menu as Wagtail's own listings have them.

        Wagtail re-renders the header with the results, so the links follow the filters.
        """
        return [
            Button(
                _("Download CSV"), url=self.export_url("csv"), icon_name="download", priority=90
            ),
            Button(
                _("Download JSON lines"),
                url=self.export_url("jsonl"),
                icon_name="download",
                priority=100,
            ),
        ]

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        export = request.GET.get("export")
        if export in ("csv", "jsonl"):
            return self.export(export)
        return super().get(request, *args, **kwargs)

    def export(self, fmt: str) -> StreamingHttpResponse:
        """The filtered rows, all of them, streamed (not paginated, not in memory)."""
        queryset = self.get_queryset().annotate(event_count=Count("events"))
        content_type = "text/csv" if fmt == "csv" else "application/x-ndjson"
        response = StreamingHttpResponse(
            export_lines(export_rows(queryset), fmt), content_type=f"{content_type}; charset=utf-8"
        )
        stamp = timezone.now().strftime("%Y%m%d-%H%M")
        response["Content-Disposition"] = f'attachment; filename="maillog-{stamp}.{fmt}"'
        return response

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context["opened_caveat"] = OPENED_CAVEAT
        paginator = context.get("paginator")
        context["count_capped"] = bool(paginator and paginator.capped)
        context["count_limit"] = paginator.limit if paginator else None
        if paginator and "outbox" in paginator.counted:
            # The menu shows this count instead of counting the outbox again.
            setattr(self.request, OUTBOX_COUNT_ATTRIBUTE, paginator.counted["outbox"])
        return context


class MessageMixin(LogAccessMixin):
    """Finds the message in the URL among those the user may see (404 otherwise)."""

    kwargs: dict[str, Any]

    @cached_property
    def message(self) -> Message:
        return get_object_or_404(
            visible_messages(self.request.user).select_related(
                "content_type", "created_by", "team", "resent_from"
            ),
            pk=self.kwargs["pk"],
        )

    def get_breadcrumbs_items(self) -> list[dict[str, Any]]:
        return [
            {"url": reverse("wagtailadmin_home"), "label": _("Home")},
            {"url": reverse("wagtail_maillog:index"), "label": _("Mail log")},
            {"url": "", "label": str(self.message)},
        ]


#: Events of a message's timeline shown per page.
EVENTS_PER_PAGE = 100


class MessageDetailView(MessageMixin, WagtailAdminTemplateMixin, TemplateView):
    """One message: envelope, recipients, event timeline, message logs, body."""

    template_name = "wagtail_maillog/detail.html"
    header_icon = "mail"

    def get_page_title(self) -> str:
        return str(self.message)

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        message = self.message
        user = self.request.user
        recipients = list(message.recipients.order_by("role", "address"))
        # Paged: an ESP (or an attacker's image proxy) can send 20,000 opens.
        events_page = WagtailPaginator(
            Event.objects.filter(recipient__message=message)
            .select_related("recipient")
            .order_by("timestamp", "received_at", "pk"),
            EVENTS_PER_PAGE,
        ).get_page(self.request.GET.get("p"))
        events = list(events_page.object_list)
        resend_refusal = actions.resend_refusal(message)  # a mailing's: one query
        copy_of = _copy_of(recipients, self.request.GET.get("recipient"))
        body_text, body_html = copy_of.body() if copy_of else (message.body_text, message.body_html)
        context.update(
            message=message,
            recipients=recipients,
            events=events,
            events_page=events_page,
            events_pages=events_page.paginator.get_elided_page_range(events_page.number),
            attempts=list(message.attempts.all()),
            # Sorted here: ORDER BY created_at makes SQLite walk the created_at index
            # of every message instead of looking up the (few) resends.
            resends=sorted(message.resends.order_by("pk"), key=lambda m: (m.created_at, m.pk)),
            show_body=bool(get_setting("STORE_BODY") and message.body_stored),
            copy_of=copy_of,
            body_text=body_text,
            body_html=body_html,
            can_resend=user.has_perm(RESEND) and not resend_refusal,
            resend_refusal=resend_refusal,
            can_cancel=user.has_perm(CANCEL) and any(r.status in CANCELLABLE for r in recipients),
            opened_caveat=OPENED_CAVEAT,
            source_label=source_label(message.source),
        )
        context.update(outbox_context(message, user))
        if context.get("outbox_may_cancel"):
            context["can_cancel"] = False  # one "Cancel sending": the outbox's, below
        return context


def _copy_of(recipients: list[Recipient], asked: str | None) -> Recipient | None:
    """The recipient of a batch whose own copy (``?recipient=<pk>``) is shown."""
    for recipient in recipients:
        if str(recipient.pk) == asked and recipient.merge_values:
            return recipient
    return None


def outbox_context(message: Message, user: Any) -> dict[str, Any]:
    """The message's outbox item, for mail that waits or failed there: its send state,
    attempts and next attempt, and Retry / Cancel with the outbox's own permissions (the
    buttons lead to the outbox's confirmation pages). Nothing for those who may not see it.
    """
    from ..outbox.tables import cancel_refusal, retry_refusal, state_badge

    if not can_view_outbox(user):
        return {}
    item = visible_outbox(user).filter(message_id=message.pk).defer("payload", "payload_mac")
    item = item.first()
    if item is None:
        return {}
    retry_no = retry_refusal(item)
    return {
        "outbox_item": item,
        "outbox_state_badge": state_badge(item.state),
        "outbox_may_retry": user.has_perm(RETRY) and not retry_no,
        "outbox_retry_refusal": retry_no if user.has_perm(RETRY) else "",
        "outbox_may_cancel": user.has_perm(OUTBOX_CANCEL) and not cancel_refusal(item),
    }


class ActionView(MessageMixin, WagtailAdminTemplateMixin, TemplateView):
    """A confirmation page (GET) and the action itself (POST, CSRF-protected)."""

    permission: str = ""
    template_name = "wagtail_maillog/confirm.html"
    header_icon = "mail"

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.user.is_authenticated and not request.user.has_perm(self.permission):
            raise PermissionDenied
        return super().dispatch(request, *args, **kwargs)

    def detail_url(self) -> str:
        return reverse("wagtail_maillog:detail", args=[self.message.pk])

    def get_breadcrumbs_items(self) -> list[dict[str, Any]]:
        items = super().get_breadcrumbs_items()
        items[-1] = {"url": self.detail_url(), "label": str(self.message)}
        return [*items, {"url": "", "label": str(self.page_title)}]


class ResendView(ActionView):
    permission = RESEND
    page_title = gettext_lazy("Resend")

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        recipients = list(self.message.recipients.order_by("role", "address"))
        held = actions.held_back(self.message, {r.address for r in recipients})
        for r in recipients:  # not ticked: the resend would not reach them
            r.held_reason = held.get(r.address, "")
        context.update(
            message=self.message,
            action="resend",
            refusal=actions.resend_refusal(self.message),
            recipients=recipients,
            per_member=actions.mailing_of(self.message) is not None,
            cancel_url=self.detail_url(),
        )
        return context

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        chosen = [pk for pk in request.POST.getlist("recipient") if pk.isdigit()]
        try:
            result = actions.resend(
                self.message,
                user=request.user,
                recipients=self.message.recipients.filter(pk__in=chosen),
            )
        except actions.ActionRefused as refusal:
            messages.error(request, str(refusal))
            return redirect(self.detail_url())
        level, text = actions.describe([result])
        getattr(messages, level)(request, text)
        target = result.new.pk if result.new else self.message.pk
        return redirect("wagtail_maillog:detail", target)


class CancelView(ActionView):
    permission = CANCEL
    page_title = gettext_lazy("Cancel sending")

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context.update(
            message=self.message,
            action="cancel",
            refusal=actions.cancel_refusal(self.message),
            recipients=list(
                self.message.recipients.filter(status__in=CANCELLABLE).order_by("address")
            ),
            cancel_url=self.detail_url(),
        )
        return context

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            count = actions.cancel(self.message, user=request.user)
        except actions.ActionRefused as refusal:
            messages.error(request, str(refusal))
        else:
            messages.success(
                request,
                ngettext(
                    "Sending was cancelled for %(count)d recipient.",
                    "Sending was cancelled for %(count)d recipients.",
                    count,
                )
                % {"count": count},
            )
        return redirect(self.detail_url())


def related_object_view(request: HttpRequest, content_type_id: int, object_id: str) -> HttpResponse:
    """Open the edit page of a message's related object (looked up only when clicked)."""
    if not can_view_log(request.user):
        raise PermissionDenied
    content_type = get_object_or_404(ContentType, pk=content_type_id)
    model = content_type.model_class()
    if model is None:
        raise Http404
    try:
        obj = model._default_manager.filter(pk=object_id).first()
    except (ValueError, ValidationError):
        obj = None  # an id that cannot be this model's
    url = AdminURLFinder(request.user).get_edit_url(obj) if obj is not None else None
    if not url:
        messages.warning(
            request,
            _("The %(type)s this mail was about no longer exists or cannot be edited here.")
            % {"type": content_type.name},
        )
        return redirect(
            f"{reverse('wagtail_maillog:index')}?related_type={content_type_id}"
            f"&related_id={object_id}"
        )
    return redirect(url)
