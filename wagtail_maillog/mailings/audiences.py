"""Who a mailing goes to: named, pluggable audiences.

An audience is a queryset of rows that each carry an address (and a name).
The package ships "all confirmed addresses" and one audience per
:class:`~wagtail_maillog.models.MailingList`; a site adds its own with the
``register_maillog_audience`` hook::

    @hooks.register("register_maillog_audience")
    def members_audience():
        return QuerySetAudience(
            "members", _("All members"), lambda: Member.objects.filter(active=True),
            email_field="email", name_field="name",
        )

Everything is set-based: counting an audience of 100,000 by address status is
one query, and sending streams it in chunks (memory does not grow with it).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from typing import Any

from django.db.models import Count, F, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce, Lower, Trim
from django.utils.translation import gettext_lazy as _
from wagtail import hooks

from .. import keyset
from ..models import Address, AddressStatus, MailingList, MailingListMember

HOOK = "register_maillog_audience"

#: Breakdown keys besides the address statuses.
NO_ADDRESS = "no_address"
NOT_KNOWN = "not_known"  # the address has no row yet: nobody ever asked it to confirm
DUPLICATE = "duplicate"


@dataclass(frozen=True)
class Entry:
    """One member of an audience, as the sender needs it."""

    address: str  # normalised (stripped, lower-cased)
    name: str


class Audience:
    """A named set of members with addresses. Subclass for non-ORM sources."""

    key: str
    label: str
    description: str = ""

    def entries(self, chunk: int) -> Iterator[list[Entry]]:
        """The members in chunks of at most ``chunk``, each read once."""
        raise NotImplementedError

    def names(self, addresses: Collection[str]) -> dict[str, str]:
        """The name of the member of each of these (normalised) addresses, for rendering
        one member's copy again (a resend); the first member of an address, as sending
        does. This fallback reads the audience through; subclasses may look them up."""
        wanted, found = set(addresses), {}
        for chunk in self.entries(CHUNK):
            for entry in chunk:
                if entry.address in wanted:
                    found.setdefault(entry.address, entry.name)
            if len(found) == len(wanted):
                break
        return found

    def breakdown(self) -> Counter[str]:
        """Members per address status (plus ``no_address`` / ``not_known``)."""
        counts: Counter[str] = Counter()
        for chunk in self.entries(CHUNK):
            statuses = _statuses(chunk)
            for entry in chunk:
                counts[_status_key(entry.address, statuses.get(entry.address))] += 1
        return counts

    def distinct_confirmed(self) -> int:
        """How many different confirmed addresses (members may share one)."""
        confirmed: set[str] = set()
        for chunk in self.entries(CHUNK):
            statuses = _statuses(chunk)
            confirmed.update(a for a, s in statuses.items() if s == AddressStatus.CONFIRMED)
        return len(confirmed)


#: Members read (and their statuses looked up) at a time by the fallbacks above.
CHUNK = 2000


def _statuses(chunk: list[Entry]) -> dict[str, str]:
    """The address status of each address of ``chunk`` that has one: one query."""
    wanted = {entry.address for entry in chunk if entry.address}
    return dict(Address.objects.filter(address__in=wanted).values_list("address", "status"))


def _status_key(address: str, status: str | None) -> str:
    if not address or "@" not in address:
        return NO_ADDRESS
    return status or NOT_KNOWN


class QuerySetAudience(Audience):
    """An audience read from a model: ``queryset`` is called each time it is used."""

    def __init__(
        self,
        key: str,
        label: Any,
        queryset: Callable[[], QuerySet[Any]],
        email_field: str = "email",
        name_field: str | Any | None = None,
        description: Any = "",
    ) -> None:
        self.key, self.label, self.description = key, label, description
        self.queryset = queryset
        self.email_field = email_field
        self.name_field = name_field

    def _annotated(self) -> QuerySet[Any]:
        if self.name_field is None:
            name = Value("")
        elif isinstance(self.name_field, str):
            name = F(self.name_field)
        else:
            name = self.name_field  # an expression, e.g. Concat("first", Value(" "), "last")
        return self.queryset().annotate(
            _maillog_address=Lower(Trim(self.email_field)), _maillog_name=name
        )

    def entries(self, chunk: int) -> Iterator[list[Entry]]:
        # Keyset pages, not one open cursor: the sender writes between the chunks.
        for page in keyset.pages(self._annotated(), chunk, "_maillog_address", "_maillog_name"):
            yield [Entry(address or "", str(name or "")) for _pk, address, name in page]

    def names(self, addresses: Collection[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        rows = (
            self._annotated()
            .filter(_maillog_address__in=list(addresses))
            .order_by("pk")
            .values_list("_maillog_address", "_maillog_name")
        )
        for address, name in rows:
            found.setdefault(address, str(name or ""))
        return found

    def _with_status(self) -> QuerySet[Any]:
        status = Address.objects.filter(address=OuterRef("_maillog_address")).values("status")[:1]
        return self._annotated().annotate(
            _maillog_status=Coalesce(Subquery(status), Value(NOT_KNOWN))
        )

    def breakdown(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        rows = self._with_status().order_by().values("_maillog_status").annotate(n=Count("pk"))
        for row in rows:
            counts[row["_maillog_status"]] += row["n"]
        no_address = Q(_maillog_address="") | Q(_maillog_address__isnull=True)
        missing = self._annotated().filter(no_address).count()
        if missing:
            counts[NOT_KNOWN] -= missing
            counts[NO_ADDRESS] += missing
            if counts[NOT_KNOWN] <= 0:
                del counts[NOT_KNOWN]
        return counts

    def distinct_confirmed(self) -> int:
        return (
            self._with_status()
            .filter(_maillog_status=AddressStatus.CONFIRMED)
            .order_by()
            .values("_maillog_address")
            .distinct()
            .count()
        )


def confirmed_addresses() -> QuerySetAudience:
    return QuerySetAudience(
        "confirmed",
        _("All confirmed addresses"),
        lambda: Address.objects.filter(status=AddressStatus.CONFIRMED),
        email_field="address",
        description=_("Every address that confirmed it wants mail and has no problem."),
    )


def list_audience(mailing_list: MailingList) -> QuerySetAudience:
    pk = mailing_list.pk
    return QuerySetAudience(
        f"list:{pk}",
        _("List: %(name)s") % {"name": mailing_list.name},
        lambda: MailingListMember.objects.filter(mailing_list_id=pk),
        email_field="address",
        name_field="name",
        description=mailing_list.description,
    )


def registered() -> dict[str, Audience]:
    """Every audience by key: built-in, from hooks, then one per mailing list."""
    found: dict[str, Audience] = {}
    for audience in [confirmed_addresses(), *_from_hooks()]:
        found[audience.key] = audience
    for mailing_list in MailingList.objects.order_by("name"):
        audience = list_audience(mailing_list)
        found[audience.key] = audience
    return found


def _from_hooks() -> Iterator[Audience]:
    for fn in hooks.get_hooks(HOOK):
        result = fn()
        if isinstance(result, Audience):
            yield result
        else:
            yield from result


def get(key: str) -> Audience | None:
    return registered().get(key)


def choices() -> list[tuple[str, str]]:
    return [(key, str(a.label)) for key, a in registered().items()]


def reason_label(key: str) -> str:
    """A person's wording of a breakdown or skip key."""
    labels = {
        NO_ADDRESS: _("No email address"),
        NOT_KNOWN: _("Address never confirmed (no confirmation asked yet)"),
        DUPLICATE: _("Address shared with another member (mailed once)"),
        **{s.value: s.label for s in AddressStatus},
    }
    return str(labels.get(key, key))
