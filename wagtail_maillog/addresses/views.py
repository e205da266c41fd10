"""The Addresses pages: the list, one address, and the actions on addresses.

Who may use them: users with ``wagtail_maillog.manage_addresses`` (and
superusers). Every change goes through the address services
(:func:`confirmation.send_requests`, :func:`confirmation.resend_unanswered`,
:func:`health.clear_problem`); these views check permissions, ask for
confirmation and report the outcome.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django import forms
from django.core.exceptions import PermissionDenied
from django.db.models import Case, Count, F, IntegerField, Min, Model, QuerySet, Value, When
from django.db.models.functions import Lower, Trim
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.http import urlencode
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from django.views.generic import FormView, TemplateView
from wagtail.admin import messages
from wagtail.admin.admin_url_finder import AdminURLFinder
from wagtail.admin.menu import MenuItem
from wagtail.admin.utils import get_valid_next_url_from_request
from wagtail.admin.views.generic.base import BaseListingView, WagtailAdminTemplateMixin
from wagtail.admin.widgets.button import HeaderButton

from ..addresses import confirmation, health, members, normalize
from ..log.access import can_view_log, visible_recipients
from ..models import Address, AddressStatus
from ..models.addresses import PROBLEMS
from .filters import AddressFilterSet
from .tables import AddressTable, address_badge, member_link

MANAGE = "wagtail_maillog.manage_addresses"
INDEX = "wagtail_maillog_addresses:index"
#: How many mails to an address its page shows.
RECENT_MAIL = 20
#: The default of "resend to those who did not react for N days".
RESEND_DAYS = 7


def can_manage_addresses(user: Any) -> bool:
    return bool(user and user.is_active and user.has_perm(MANAGE))


# ---- members of many addresses at once ---------------------------------------


def members_by_address(addresses: Iterable[str]) -> dict[str, Model]:
    """{normalised address: member} for these addresses, in one query per member model.

    The same answer as :func:`members.member_for` for each address (the first
    registered model that has one wins; within a model the lowest pk), without
    a query per address.
    """
    wanted = {normalize(a) for a in addresses if a}
    found: dict[str, Model] = {}
    for spec in members.registered():
        missing = wanted - set(found)
        if not missing:
            break
        key = "_maillog_address"
        rows = (
            spec.model._default_manager.annotate(**{key: Lower(Trim(spec.email_field))})
            .filter(**{f"{key}__in": missing})
            .order_by("pk")
        )
        for member in rows:
            found.setdefault(getattr(member, key), member)
    return found


def member_edit_urls(user: Any, found: dict[str, Model]) -> dict[str, str | None]:
    """The admin edit URL of each member, where the user may edit it."""
    finder = AdminURLFinder(user)
    return {address: finder.get_edit_url(member) for address, member in found.items()}


# ---- access and the menu -----------------------------------------------------


class AddressAccessMixin:
    """Only users who may manage addresses get in (Wagtail redirects the others)."""

    request: HttpRequest

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not can_manage_addresses(request.user):
            raise PermissionDenied
        return super().dispatch(request, *args, **kwargs)  # type: ignore[misc]


class AddressesMenuItem(MenuItem):
    def is_shown(self, request: HttpRequest) -> bool:
        return can_manage_addresses(request.user)


def build_menu_item() -> AddressesMenuItem:
    return AddressesMenuItem(
        gettext_lazy("Addresses"), reverse(INDEX), icon_name="group", name="addresses", order=300
    )


# ---- the list ----------------------------------------------------------------

#: Status in the order of AddressStatus (unconfirmed, requested, confirmed, problems).
_STATUS_RANK = Case(
    *(When(status=value, then=Value(rank)) for rank, value in enumerate(AddressStatus.values)),
    default=Value(len(AddressStatus.values)),
    output_field=IntegerField(),
)
ORDERINGS: dict[str, tuple[Any, ...]] = {
    "address": ("address",),
    "-address": ("-address",),
    "status": (_STATUS_RANK.asc(), "address"),
    "-status": (_STATUS_RANK.desc(), "address"),
    "status_at": ("status_at", "pk"),
    "-status_at": ("-status_at", "-pk"),
    "last_event_at": (F("last_event_at").asc(nulls_first=True), "pk"),
    "-last_event_at": (F("last_event_at").desc(nulls_last=True), "-pk"),
}


def search_addresses(queryset: QuerySet[Address], query: str) -> QuerySet[Address]:
    query = normalize(query)
    return queryset.filter(address__icontains=query) if query else queryset


def listing_queryset(request: HttpRequest) -> QuerySet[Address]:
    """What the listing shows for this request's filters and search (all pages)."""
    queryset = Address.objects.all()
    filters = AddressFilterSet(data=request.GET, request=request, queryset=queryset)
    queryset = filters.qs if filters.is_valid() else queryset.none()
    return search_addresses(queryset, request.GET.get("q", ""))


class AddressIndexView(AddressAccessMixin, BaseListingView):
    """Every address the site mails: its status, since when, and whose it is."""

    page_title = gettext_lazy("Addresses")
    header_icon = "group"
    index_url_name = INDEX
    index_results_url_name = "wagtail_maillog_addresses:index_results"
    template_name = "wagtail_maillog/index.html"
    bulk_model_name = "address"
    select_all_label = gettext_lazy("Select all addresses in listing")
    results_template_name = "wagtail_maillog/addresses/index_results.html"
    filterset_class = AddressFilterSet
    is_searchable = True
    search_backend_name = None
    default_ordering = "-status_at"
    paginate_by = 50
    verbose_name = gettext_lazy("address")
    verbose_name_plural = gettext_lazy("addresses")
    model = Address

    def get_valid_orderings(self) -> list[str]:
        return list(ORDERINGS)

    def order_queryset(self, queryset: QuerySet[Address]) -> QuerySet[Address]:
        return queryset.order_by(*ORDERINGS.get(self.ordering, ORDERINGS["-status_at"]))

    def search_queryset(self, queryset: QuerySet[Address]) -> QuerySet[Address]:
        return search_addresses(queryset, self.search_query)

    def get_base_queryset(self) -> QuerySet[Address]:
        return Address.objects.defer("nonce")

    def get_table(self, object_list: Any) -> AddressTable:
        rows = list(object_list)
        found = members_by_address(r.address for r in rows)
        return AddressTable(
            rows,
            orderable=True,
            members=found,
            member_urls=member_edit_urls(self.request.user, found),
        )

    def get_header_buttons(self) -> list[Any]:
        # On a phone the label would squeeze the page's name to its first letter: there it
        # is kept for screen readers only (addresses.css), the tooltip shows it on hover.
        label = _("Resend unanswered requests")
        return [
            HeaderButton(
                format_html('<span class="maillog-header-button__label">{}</span>', label),
                url=reverse("wagtail_maillog_addresses:resend"),
                icon_name="resubmit",
                classname="maillog-header-button",
                attrs={"title": label},
            )
        ]


# ---- one address -------------------------------------------------------------


def _next_url(request: HttpRequest, default: str) -> str:
    return get_valid_next_url_from_request(request) or default


class AddressMixin(AddressAccessMixin):
    """Finds the address in the URL (404 otherwise)."""

    kwargs: dict[str, Any]

    @cached_property
    def address(self) -> Address:
        return get_object_or_404(Address, pk=self.kwargs["pk"])

    def detail_url(self) -> str:
        return reverse("wagtail_maillog_addresses:detail", args=[self.address.pk])

    def get_breadcrumbs_items(self) -> list[dict[str, Any]]:
        return [
            {"url": reverse("wagtailadmin_home"), "label": _("Home")},
            {"url": reverse(INDEX), "label": _("Addresses")},
            {"url": "", "label": self.address.address},
        ]


def send_url(address: str, next_url: str = "") -> str:
    query = {"address": address, **({"next": next_url} if next_url else {})}
    return f"{reverse('wagtail_maillog_addresses:send')}?{urlencode(query)}"


def clear_url(address: Address, next_url: str = "") -> str:
    url = reverse("wagtail_maillog_addresses:clear", args=[address.pk])
    return f"{url}?{urlencode({'next': next_url})}" if next_url else url


def send_refusal(address: Address | None) -> str:
    """Why no confirmation request can go to this address, or ""."""
    if address is None:
        return ""
    if address.has_problem:
        return _(
            "This address has a problem (%(status)s): no mail goes to it. "
            "Clear the problem first, once the member has fixed it."
        ) % {"status": address.get_status_display()}
    if address.status == AddressStatus.CONFIRMED:
        return _("This address is already confirmed.")
    return ""


class AddressDetailView(AddressMixin, WagtailAdminTemplateMixin, TemplateView):
    """One address: its status, its history, its member and the recent mail to it."""

    template_name = "wagtail_maillog/addresses/detail.html"
    header_icon = "group"

    def get_page_title(self) -> str:
        return self.address.address

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        address, user = self.address, self.request.user
        found = members_by_address([address.address])
        member = found.get(address.address)
        may_view_log = can_view_log(user)
        recent = []
        if may_view_log:
            recent = list(
                visible_recipients(user)
                .filter(address=address.address)
                .select_related("message")
                .order_by("-created_at", "-pk")[: RECENT_MAIL + 1]
            )
        changes = list(address.changes.select_related("user", "recipient").order_by("-at", "-pk"))
        linked = {c.recipient_id for c in changes if c.recipient_id}
        if linked and may_view_log:  # only messages the user may open in the log
            linked = set(
                visible_recipients(user).filter(pk__in=linked).values_list("pk", flat=True)
            )
        here = self.request.get_full_path()
        context.update(
            address=address,
            badge=address_badge(address.status, address.reason),
            member=member,
            member_html=member_link(member, member_edit_urls(user, found).get(address.address)),
            changes=[
                {
                    "change": change,
                    "old_badge": address_badge(change.old) if change.old else "",
                    "new_badge": address_badge(change.new),
                    "message_id": (
                        change.recipient.message_id
                        if may_view_log and change.recipient_id in linked
                        else None
                    ),
                }
                for change in changes
            ],
            can_view_log=may_view_log,
            recent=recent[:RECENT_MAIL],
            more_mail=len(recent) > RECENT_MAIL,
            log_url=f"{reverse('wagtail_maillog:index')}?{urlencode({'q': address.address})}",
            send_refusal=send_refusal(address),
            send_url=send_url(address.address, here),
            can_clear=address.has_problem,
            clear_url=clear_url(address, here),
        )
        return context


# ---- actions on one address --------------------------------------------------


class SendRequestView(AddressAccessMixin, WagtailAdminTemplateMixin, TemplateView):
    """Send a confirmation request to one address (``?address=``): asks, then sends.

    Keyed by the address, not a row: a member whose address has no row yet
    (a member from before wagtail-maillog was installed) can be asked too.
    """

    template_name = "wagtail_maillog/addresses/confirm_send.html"
    header_icon = "mail"
    page_title = gettext_lazy("Send confirmation request")

    @cached_property
    def target(self) -> str:
        value = normalize(self.request.GET.get("address") or self.request.POST.get("address", ""))
        if "@" not in value or len(value) > 254:
            raise Http404
        return value

    @cached_property
    def row(self) -> Address | None:
        return Address.objects.filter(address=self.target).first()

    def back_url(self) -> str:
        if self.row is not None:
            default = reverse("wagtail_maillog_addresses:detail", args=[self.row.pk])
        else:
            default = reverse(INDEX)
        return _next_url(self.request, default)

    def get_breadcrumbs_items(self) -> list[dict[str, Any]]:
        items = [
            {"url": reverse("wagtailadmin_home"), "label": _("Home")},
            {"url": reverse(INDEX), "label": _("Addresses")},
        ]
        if self.row is not None:
            url = reverse("wagtail_maillog_addresses:detail", args=[self.row.pk])
            items.append({"url": url, "label": self.row.address})
        return [*items, {"url": "", "label": str(self.page_title)}]

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        status = self.row.status if self.row else AddressStatus.UNCONFIRMED
        context.update(
            target=self.target,
            badge=address_badge(status, self.row.reason if self.row else ""),
            refusal=send_refusal(self.row),
            back_url=self.back_url(),
            next_url=get_valid_next_url_from_request(self.request),
        )
        return context

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        refusal = send_refusal(self.row)
        if refusal:
            messages.error(request, refusal)
        elif confirmation.send_requests([self.target], user=request.user):
            messages.success(
                request,
                _("A confirmation request was sent to %(address)s.") % {"address": self.target},
            )
        else:
            messages.warning(request, _("Nothing was sent."))
        return redirect(self.back_url())


class ClearProblemView(AddressMixin, WagtailAdminTemplateMixin, TemplateView):
    """Clear the problem of one address (after the member fixed it): asks, then clears."""

    template_name = "wagtail_maillog/addresses/confirm_clear.html"
    header_icon = "group"
    page_title = gettext_lazy("Clear problem")

    def get_breadcrumbs_items(self) -> list[dict[str, Any]]:
        items = super().get_breadcrumbs_items()
        items[-1] = {"url": self.detail_url(), "label": self.address.address}
        return [*items, {"url": "", "label": str(self.page_title)}]

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context.update(
            address=self.address,
            badge=address_badge(self.address.status, self.address.reason),
            back_url=_next_url(self.request, self.detail_url()),
            next_url=get_valid_next_url_from_request(self.request),
        )
        return context

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if health.clear_problem([self.address], user=request.user):
            messages.success(
                request,
                _("The problem of %(address)s was cleared; it is unconfirmed now.")
                % {"address": self.address.address},
            )
        else:
            messages.warning(request, _("This address has no problem to clear."))
        return redirect(_next_url(request, self.detail_url()))


# ---- resend to those who did not react ---------------------------------------


class ResendForm(forms.Form):
    days = forms.IntegerField(
        label=gettext_lazy("Not reacted for (days)"),
        min_value=1,
        max_value=365,
        initial=RESEND_DAYS,
        help_text=gettext_lazy(
            "Addresses whose last confirmation request is older than this, and still unanswered."
        ),
    )


class ResendUnansweredView(AddressAccessMixin, WagtailAdminTemplateMixin, FormView):
    """Ask again every address that has not reacted to a request for N days."""

    template_name = "wagtail_maillog/addresses/resend.html"
    form_class = ResendForm
    header_icon = "resubmit"
    page_title = gettext_lazy("Resend unanswered requests")

    def get_breadcrumbs_items(self) -> list[dict[str, Any]]:
        return [
            {"url": reverse("wagtailadmin_home"), "label": _("Home")},
            {"url": reverse(INDEX), "label": _("Addresses")},
            {"url": "", "label": str(self.page_title)},
        ]

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        waiting = Address.objects.filter(status=AddressStatus.REQUESTED).aggregate(
            count=Count("pk"), oldest=Min("requested_at")
        )
        context.update(
            waiting=waiting["count"],
            oldest=waiting["oldest"],
            waiting_url=f"{reverse(INDEX)}?{urlencode({'status': AddressStatus.REQUESTED})}",
            back_url=reverse(INDEX),
        )
        return context

    def form_valid(self, form: ResendForm) -> HttpResponse:
        days = form.cleaned_data["days"]
        sent = confirmation.resend_unanswered(days, user=self.request.user)
        if sent:
            messages.success(
                self.request,
                ngettext(
                    "%(count)d confirmation request was sent again.",
                    "%(count)d confirmation requests were sent again.",
                    sent,
                )
                % {"count": sent},
            )
        else:
            messages.info(
                self.request,
                ngettext(
                    "No address has left a request unanswered for more than %(days)d day.",
                    "No address has left a request unanswered for more than %(days)d days.",
                    days,
                )
                % {"days": days},
            )
        return redirect(INDEX)


# ---- counts for the dashboard ------------------------------------------------


def status_counts() -> dict[str, int]:
    """{status: number of addresses}, every status present (one GROUP BY query)."""
    counts = dict.fromkeys(AddressStatus.values, 0)
    rows = Address.objects.order_by().values_list("status").annotate(n=Count("pk"))
    counts.update(dict(rows))
    return counts


def newest_problems(limit: int = 5) -> list[Address]:
    return list(
        Address.objects.filter(status__in=PROBLEMS)
        .defer("nonce")
        .order_by("-status_at", "-pk")[:limit]
    )
