"""The outbox pages: the list (four views), one item, retry, cancel, connectors.

Every change goes through the outbox services (:func:`worker.retry_now`,
:func:`worker.cancel`, :func:`connectors.set_enabled`); these views only
check permissions, ask for confirmation and report the outcome. The one thing
they store themselves is how the user likes to look at the outbox
(:class:`~wagtail_maillog.models.OutboxPreference`).
"""

from __future__ import annotations

from typing import Any

import django_filters
from django import forms
from django.core.exceptions import PermissionDenied
from django.db.models import Case, Count, F, IntegerField, Prefetch, Q, QuerySet, Value, When
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.utils.functional import cached_property
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from django.views.generic import TemplateView, View
from wagtail.admin import messages
from wagtail.admin.filters import WagtailFilterSet
from wagtail.admin.menu import MenuItem, SubmenuMenuItem
from wagtail.admin.modal_workflow import render_modal_workflow
from wagtail.admin.paginator import WagtailPaginator
from wagtail.admin.ui.sidebar import LinkMenuItem as LinkMenuItemComponent
from wagtail.admin.ui.sidebar import SubMenuItem as SubMenuItemComponent
from wagtail.admin.views.generic.base import BaseListingView, WagtailAdminTemplateMixin
from wagtail.admin.widgets.button import HeaderButton

from ..admin.filters import YesNoFilter
from ..models import ConnectorState, OutboxItem, Recipient, SendState
from ..models.messages import Importance, Role
from ..outbox import connectors, worker
from ..sources import source_label
from .access import (
    CANCEL,
    COUNT_ATTRIBUTE,
    MANAGE_CONNECTORS,
    PAGE_SIZES,
    RETRY,
    VIEWS,
    can_view_outbox,
    opening_view,
    outbox_count,
    preference,
    save_preference,
    view_counts,
    view_filter,
    visible_outbox,
)
from .tables import (
    OPTIONAL_COLUMNS,
    REQUIRED_COLUMNS,
    OutboxTable,
    cancel_refusal,
    retry_refusal,
    state_badge,
)

INDEX = "wagtail_maillog_outbox:index"
#: Query parameters that belong to one page of the listing, not to its state.
TRANSIENT_PARAMS = ("p", "_w_filter_fragment")

_IMPORTANCE_RANK = Case(
    When(message__importance=Importance.HIGH, then=Value(0)),
    When(message__importance=Importance.NORMAL, then=Value(1)),
    default=Value(2),
    output_field=IntegerField(),
)


def _by(expression: Any, descending: bool) -> tuple[Any, Any]:
    if isinstance(expression, str):
        expression = F(expression)
    ordered = expression.desc(nulls_last=True) if descending else expression.asc(nulls_last=True)
    return ordered, F("pk").desc() if descending else F("pk").asc()


_SORT_KEYS: dict[str, Any] = {
    "created_at": "created_at",
    "subject": "message__subject",
    "connector": "connector",
    "importance": _IMPORTANCE_RANK,
    "last_attempt_at": "last_attempt_at",
    "first_failure_at": "first_failure_at",
    "next_attempt_at": "next_attempt_at",
    "attempts": "attempts",
    "state": "state",
}
ORDERINGS: dict[str, tuple[Any, ...]] = {}
for _key, _expression in _SORT_KEYS.items():
    ORDERINGS[_key] = _by(_expression, descending=False)
    ORDERINGS[f"-{_key}"] = _by(_expression, descending=True)


def _connector_choices() -> list[tuple[str, str]]:
    return [(name, name) for name in connectors.configured()]


class OutboxPaginator(WagtailPaginator):
    """Counts "mails", not "outbox" (the model's plural)."""

    verbose_name = gettext_lazy("mail")
    verbose_name_plural = gettext_lazy("mails")


class OutboxFilterSet(WagtailFilterSet):
    state = django_filters.MultipleChoiceFilter(
        label=gettext_lazy("Send state"),
        choices=SendState.choices,
        widget=forms.CheckboxSelectMultiple,
    )
    connector = django_filters.ChoiceFilter(
        label=gettext_lazy("Connector"), choices=_connector_choices
    )
    importance = django_filters.ChoiceFilter(
        label=gettext_lazy("Importance"),
        field_name="message__importance",
        choices=Importance.choices,
    )
    system_generated = YesNoFilter(
        label=gettext_lazy("System-generated"), field_name="message__system_generated"
    )

    class Meta:
        model = OutboxItem
        fields: list[str] = []


def search_outbox(queryset: QuerySet[OutboxItem], query: str) -> QuerySet[OutboxItem]:
    """Items whose subject or one of whose addresses contains ``query``."""
    query = query.strip()
    if not query:
        return queryset
    addresses = Recipient.objects.filter(address__icontains=query).values("message_id")
    return queryset.filter(Q(message__subject__icontains=query) | Q(message_id__in=addresses))


def ordered_recipients(message: Any) -> list[Recipient]:
    """To, then Cc, then Bcc, each by address."""
    rank = {Role.TO: 0, Role.CC: 1, Role.BCC: 2}
    return sorted(message.recipients.all(), key=lambda r: (rank.get(r.role, 3), r.address))


def chosen_view(request: HttpRequest) -> str:
    """The view asked for in the URL, else the remembered one, else the one the list
    opens on (:func:`opening_view`): what "select all" of the listing selected."""
    asked = request.GET.get("view")
    if asked in VIEWS:
        return asked
    saved = preference(request.user).view
    if saved in VIEWS:
        return saved
    return opening_view(request.user, view_counts(request.user))


def listing_queryset(request: HttpRequest) -> QuerySet[OutboxItem]:
    """What the listing shows for this request's view, filters and search (all pages)."""
    user = request.user
    queryset = visible_outbox(user).filter(view_filter(user, chosen_view(request)))
    filters = OutboxFilterSet(data=request.GET, request=request, queryset=queryset)
    queryset = filters.qs if filters.is_valid() else queryset.none()
    return search_outbox(queryset, request.GET.get("q", ""))


class OutboxAccessMixin:
    """Only users who may view the outbox get in (403 otherwise)."""

    request: HttpRequest

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not can_view_outbox(request.user):
            raise PermissionDenied
        return super().dispatch(request, *args, **kwargs)  # type: ignore[misc]


class OutboxIndexView(OutboxAccessMixin, BaseListingView):
    """The outbox: one row per waiting or failed mail, in the user's chosen view."""

    page_title = gettext_lazy("Outbox")
    header_icon = "time"
    index_url_name = INDEX
    index_results_url_name = "wagtail_maillog_outbox:index_results"
    template_name = "wagtail_maillog/outbox/index.html"
    bulk_model_name = "outboxitem"
    select_all_label = gettext_lazy("Select all mail in this view")
    results_template_name = "wagtail_maillog/outbox/index_results.html"
    filterset_class = OutboxFilterSet
    is_searchable = True
    search_backend_name = None
    default_ordering = "-created_at"
    verbose_name = gettext_lazy("mail")
    verbose_name_plural = gettext_lazy("mails")
    model = OutboxItem
    paginator_class = OutboxPaginator

    # ---- what the user chose, and remembering it -----------------------------

    @cached_property
    def pref(self) -> Any:
        return preference(self.request.user)

    @cached_property
    def counts(self) -> dict[str, int]:
        """How many mails each view holds (one query, shared by the tabs and the menu)."""
        return view_counts(self.request.user)

    @cached_property
    def current_view(self) -> str:
        asked = self.request.GET.get("view")
        if asked in VIEWS:
            return asked
        if self.pref.view in VIEWS:
            return self.pref.view
        return opening_view(self.request.user, self.counts)

    @cached_property
    def page_size(self) -> int:
        asked = self.request.GET.get("per_page", "")
        if asked.isdigit() and int(asked) in PAGE_SIZES:
            return int(asked)
        return self.pref.page_size if self.pref.page_size in PAGE_SIZES else PAGE_SIZES[1]

    @cached_property
    def hidden_columns(self) -> list[str]:
        return [c for c in self.pref.columns or [] if c in OPTIONAL_COLUMNS]

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        changes: dict[str, Any] = {}
        if request.GET.get("view") in VIEWS:
            changes["view"] = self.current_view
        if "per_page" in request.GET and self.page_size == _int(request.GET["per_page"]):
            changes["page_size"] = self.page_size
        if changes:
            save_preference(self.pref, **changes)
        return super().get(request, *args, **kwargs)

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        """The column chooser: which optional columns to show (To and Subject always)."""
        shown = set(request.POST.getlist("columns"))
        hidden = [name for name in OPTIONAL_COLUMNS if name not in shown]
        changes: dict[str, Any] = {"columns": hidden}
        size = _int(request.POST.get("per_page", ""))
        if size in PAGE_SIZES:
            changes["page_size"] = size
        save_preference(self.pref, **changes)
        messages.success(request, _("Your outbox display settings were saved."))
        query = self._query(drop=("per_page",))
        return redirect(f"{self.index_url}?{query}" if query else self.index_url)

    # ---- the listing ---------------------------------------------------------

    def get_paginate_by(self, queryset: Any) -> int:
        return self.page_size

    def get_valid_orderings(self) -> list[str]:
        return list(ORDERINGS)

    def order_queryset(self, queryset: QuerySet[OutboxItem]) -> QuerySet[OutboxItem]:
        return queryset.order_by(*ORDERINGS.get(self.ordering, ORDERINGS["-created_at"]))

    def get_base_queryset(self) -> QuerySet[OutboxItem]:
        user = self.request.user
        return (
            visible_outbox(user)
            .filter(view_filter(user, self.current_view))
            .select_related("message", "message__content_type")
            .prefetch_related(
                Prefetch("message__recipients", queryset=Recipient.objects.order_by("role", "pk"))
            )
            .defer("payload", "payload_mac")
        )

    def search_queryset(self, queryset: QuerySet[OutboxItem]) -> QuerySet[OutboxItem]:
        return search_outbox(queryset, self.search_query)

    def get_table(self, object_list: Any) -> OutboxTable:
        return OutboxTable(
            list(object_list),
            orderable=True,
            user=self.request.user,
            hidden=self.hidden_columns,
        )

    def get_header_buttons(self) -> list[Any]:
        return [
            HeaderButton(
                _("Connectors"),
                url=reverse("wagtail_maillog_outbox:connectors"),
                icon_name="cogs",
            )
        ]

    def _query(self, drop: tuple[str, ...] = (), **values: Any) -> str:
        """This page's query string, without ``drop`` and page furniture, with ``values``."""
        params = self.request.GET.copy()
        for key in (*TRANSIENT_PARAMS, *drop, *values):
            params.pop(key, None)
        for key, value in values.items():
            params[key] = value
        return params.urlencode()

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        counts = self.counts
        # The "All" tab counts what the menu badge counts: no second query for it.
        setattr(self.request, COUNT_ATTRIBUTE, counts["all"])
        context["outbox_views"] = [
            {
                "key": key,
                "label": label,
                "count": counts[key],
                "url": f"{self.index_url}?{self._query(view=key)}",
                "current": key == self.current_view,
            }
            for key, label in VIEWS.items()
        ]
        context["current_view"] = self.current_view
        context["page_sizes"] = PAGE_SIZES
        context["page_size"] = self.page_size
        context["keep_params"] = [
            (key, value)
            for key, values in self.request.GET.lists()
            if key not in (*TRANSIENT_PARAMS, "per_page")
            for value in values
        ]
        context["columns_action"] = f"{self.index_url}?{self._query()}"
        context["required_columns"] = [
            context["table"].columns[name].header for name in REQUIRED_COLUMNS
        ]
        context["column_choices"] = [
            {"name": name, "label": label, "shown": name not in self.hidden_columns}
            for name, label in OPTIONAL_COLUMNS.items()
        ]
        enabled = connectors.enabled_names()
        context["disabled_connectors"] = sorted(set(connectors.configured()) - enabled)
        context["connectors_url"] = reverse("wagtail_maillog_outbox:connectors")
        return context


def _int(value: str) -> int | None:
    return int(value) if value.isdigit() else None


class OutboxItemMixin(OutboxAccessMixin):
    """Finds the item in the URL among those the user may see (404 otherwise)."""

    kwargs: dict[str, Any]
    request: HttpRequest

    @cached_property
    def item(self) -> OutboxItem:
        return get_object_or_404(
            visible_outbox(self.request.user)
            .select_related(
                "message", "message__content_type", "message__created_by", "message__team"
            )
            .defer("payload", "payload_mac"),
            pk=self.kwargs["pk"],
        )

    def get_breadcrumbs_items(self) -> list[dict[str, Any]]:
        return [
            {"url": reverse("wagtailadmin_home"), "label": _("Home")},
            {"url": reverse(INDEX), "label": _("Outbox")},
            {"url": "", "label": str(self.item)},
        ]


class OutboxDetailView(OutboxItemMixin, WagtailAdminTemplateMixin, TemplateView):
    """One outbox item, read-only: envelope, recipients, state, attempts, errors."""

    template_name = "wagtail_maillog/outbox/detail.html"
    header_icon = "time"

    def get_page_title(self) -> str:
        return str(self.item)

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        item, user = self.item, self.request.user
        message = item.message
        context.update(
            item=item,
            message=message,
            recipients=ordered_recipients(message),
            attempts=list(message.attempts.all()),
            state_badge=state_badge(item.state),
            connector_enabled=connectors.is_enabled(item.connector),
            connector_known=item.connector in connectors.configured(),
            may_retry=user.has_perm(RETRY),
            may_cancel=user.has_perm(CANCEL),
            retry_refusal=retry_refusal(item),
            cancel_refusal=cancel_refusal(item),
            source_label=source_label(message.source),
        )
        return context


class OutboxQuickView(OutboxItemMixin, View):
    """One outbox item, read-only, in a Wagtail modal over the listing (``ModalWorkflow``).

    The essentials of :class:`OutboxDetailView` with Retry and Cancel (links to
    their confirmation pages) and a link to the full page.
    """

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        item, user = self.item, request.user
        return render_modal_workflow(
            request,
            "wagtail_maillog/outbox/quick_view.html",
            None,
            {
                "item": item,
                "message": item.message,
                "recipients": ordered_recipients(item.message),
                "state_badge": state_badge(item.state),
                "connector_enabled": connectors.is_enabled(item.connector),
                "may_retry": user.has_perm(RETRY) and not retry_refusal(item),
                "may_cancel": user.has_perm(CANCEL) and not cancel_refusal(item),
                "retry_refusal": retry_refusal(item) if user.has_perm(RETRY) else "",
            },
            json_data={"step": "quick_view"},
        )


class OutboxActionView(OutboxItemMixin, WagtailAdminTemplateMixin, TemplateView):
    """A confirmation page (GET) and the action itself (POST, CSRF-protected)."""

    permission = ""
    action = ""
    template_name = "wagtail_maillog/outbox/confirm.html"
    header_icon = "time"

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.user.is_authenticated and not request.user.has_perm(self.permission):
            raise PermissionDenied
        return super().dispatch(request, *args, **kwargs)

    def refusal(self) -> str:
        raise NotImplementedError

    def detail_url(self) -> str:
        return reverse("wagtail_maillog_outbox:detail", args=[self.item.pk])

    def get_breadcrumbs_items(self) -> list[dict[str, Any]]:
        items = super().get_breadcrumbs_items()
        items[-1] = {"url": self.detail_url(), "label": str(self.item)}
        return [*items, {"url": "", "label": str(self.page_title)}]

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context.update(
            item=self.item,
            message=self.item.message,
            action=self.action,
            refusal=self.refusal(),
            recipients=ordered_recipients(self.item.message),
            back_url=self.detail_url(),
            connector_enabled=connectors.is_enabled(self.item.connector),
        )
        return context


class OutboxRetryView(OutboxActionView):
    permission = RETRY
    action = "retry"
    page_title = gettext_lazy("Retry sending")

    def refusal(self) -> str:
        return retry_refusal(self.item)

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        item = self.item
        refusal = self.refusal()
        if refusal or not worker.retry_now([item], request.user):
            messages.error(request, refusal or _("This mail could not be retried."))
            return redirect(self.detail_url())
        if connectors.is_enabled(item.connector):
            messages.success(request, _("The mail will be sent again shortly."))
        else:
            messages.warning(
                request,
                _(
                    "The mail is waiting for a retry, but its connector %(name)s is disabled: "
                    "it leaves once the connector is enabled again."
                )
                % {"name": item.connector},
            )
        return redirect(self.detail_url())


class OutboxCancelView(OutboxActionView):
    permission = CANCEL
    action = "cancel"
    page_title = gettext_lazy("Cancel sending")

    def refusal(self) -> str:
        return cancel_refusal(self.item)

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        item = self.item
        refusal = self.refusal()
        if refusal or not worker.cancel([item], request.user):
            messages.error(
                request, refusal or _("This mail could not be cancelled: it may have left.")
            )
            return redirect(self.detail_url())
        log_url = reverse("wagtail_maillog:detail", args=[item.message_id])
        messages.success(
            request,
            _("Sending “%(subject)s” was cancelled; it left the outbox.") % {"subject": item},
            buttons=[messages.button(log_url, _("View in the mail log"))],
        )
        return redirect(INDEX)


# ---- connectors ----------------------------------------------------------------


class ConnectorsView(OutboxAccessMixin, WagtailAdminTemplateMixin, TemplateView):
    """The configured connectors, whether they send now, and how much mail waits."""

    template_name = "wagtail_maillog/outbox/connectors.html"
    page_title = gettext_lazy("Connectors")
    header_icon = "cogs"

    def get_breadcrumbs_items(self) -> list[dict[str, Any]]:
        return [
            {"url": reverse("wagtailadmin_home"), "label": _("Home")},
            {"url": reverse(INDEX), "label": _("Outbox")},
            {"url": "", "label": _("Connectors")},
        ]

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        configured = connectors.configured()
        enabled = connectors.enabled_names()
        states = {s.name: s for s in ConnectorState.objects.select_related("changed_by")}
        waiting = dict(
            visible_outbox(self.request.user)
            .order_by()
            .values_list("connector")
            .annotate(n=Count("pk"))
        )
        rows = [
            {
                "name": name,
                "backend": spec["BACKEND"],
                "in_settings": spec.get("ENABLED", True),
                "enabled": name in enabled,
                "state": states.get(name),
                "waiting": waiting.get(name, 0),
                "default": name == connectors.default_name(),
            }
            for name, spec in configured.items()
        ]
        context.update(
            rows=rows,
            unknown=sorted((n, c) for n, c in waiting.items() if n not in configured),
            may_manage=self.request.user.has_perm(MANAGE_CONNECTORS),
            outbox_url=reverse(INDEX),
        )
        return context


class ConnectorToggleView(OutboxAccessMixin, WagtailAdminTemplateMixin, TemplateView):
    """Confirm (GET), then switch a connector on or off (POST)."""

    template_name = "wagtail_maillog/outbox/connector_confirm.html"
    header_icon = "cogs"
    enable = True

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.user.is_authenticated and not request.user.has_perm(MANAGE_CONNECTORS):
            raise PermissionDenied
        return super().dispatch(request, *args, **kwargs)

    @cached_property
    def name(self) -> str:
        name = self.kwargs["name"]
        if name not in connectors.configured():
            raise Http404
        return name

    def get_page_title(self) -> str:
        if self.enable:
            return _("Enable connector %(name)s") % {"name": self.name}
        return _("Disable connector %(name)s") % {"name": self.name}

    def get_breadcrumbs_items(self) -> list[dict[str, Any]]:
        return [
            {"url": reverse("wagtailadmin_home"), "label": _("Home")},
            {"url": reverse(INDEX), "label": _("Outbox")},
            {"url": reverse("wagtail_maillog_outbox:connectors"), "label": _("Connectors")},
            {"url": "", "label": self.get_page_title()},
        ]

    def refusal(self) -> str:
        if self.enable and not connectors.configured()[self.name].get("ENABLED", True):
            return _(
                "The connector %(name)s is switched off in the settings (ENABLED: False); "
                "only a change of the settings can switch it on."
            ) % {"name": self.name}
        return ""

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        waiting = visible_outbox(self.request.user).filter(connector=self.name).count()
        context.update(
            name=self.name,
            enable=self.enable,
            refusal=self.refusal(),
            waiting=waiting,
            back_url=reverse("wagtail_maillog_outbox:connectors"),
        )
        return context

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        refusal = self.refusal()
        if refusal:
            messages.error(request, refusal)
        else:
            connectors.set_enabled(self.name, self.enable, request.user)
            # what waits for this connector (as the confirmation page counted it), not how
            # many rows changed state: mail that is not due yet keeps its state
            waiting = visible_outbox(request.user).filter(connector=self.name).count()
            if self.enable:
                text = ngettext(
                    "The connector %(name)s is enabled: %(count)d mail in the outbox goes "
                    "through it again.",
                    "The connector %(name)s is enabled: %(count)d mails in the outbox go "
                    "through it again.",
                    waiting,
                )
            else:
                text = ngettext(
                    "The connector %(name)s is disabled: %(count)d mail in the outbox waits "
                    "until it is enabled again.",
                    "The connector %(name)s is disabled: %(count)d mails in the outbox wait "
                    "until it is enabled again.",
                    waiting,
                )
            messages.success(request, text % {"name": self.name, "count": waiting})
        return redirect("wagtail_maillog_outbox:connectors")


# ---- the menu ------------------------------------------------------------------


class OutboxMenuItem(MenuItem):
    """ "Outbox (3)": the number of mails in the outbox the user can see.

    One COUNT query per request (remembered on the request; the outbox page
    itself hands over the count of its "All" tab).
    """

    def is_shown(self, request: HttpRequest) -> bool:
        return can_view_outbox(request.user)

    def render_component(self, request: HttpRequest) -> LinkMenuItemComponent:
        count = outbox_count(request)
        label = self.label
        if count:
            label = _("%(label)s (%(count)s)") % {"label": self.label, "count": count}
        return LinkMenuItemComponent(
            self.name,
            label,
            self.url,
            icon_name=self.icon_name,
            classname=self.classname,
            attrs={**self.attrs, "data-maillog-outbox-count": str(count)},
        )


class MailMenuItem(SubmenuMenuItem):
    """The top-level "Mail" menu item, with the outbox count in its label: "Mail (3)".

    Seen while the submenu is closed. The count is the Outbox entry's
    (:func:`outbox_count`, one COUNT per request, none for users who cannot
    open the outbox).
    """

    def render_component(self, request: HttpRequest) -> SubMenuItemComponent:
        count = outbox_count(request) if can_view_outbox(request.user) else 0
        label = self.label
        if count:
            label = _("%(label)s (%(count)s)") % {"label": self.label, "count": count}
        return SubMenuItemComponent(
            self.name,
            label,
            self.menu.render_component(request),
            icon_name=self.icon_name,
            classname=self.classname,
            attrs={**self.attrs, "data-maillog-outbox-count": str(count)},
        )


def build_menu_item() -> OutboxMenuItem:
    return OutboxMenuItem(
        gettext_lazy("Outbox"), reverse(INDEX), icon_name="time", name="outbox", order=200
    )
