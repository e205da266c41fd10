"""The deliverability figures, read from the rollup (never from the log).

Every figure counts *recipients*: a recipient counts once as delivered, once
as bounced, once as opened..., on the day the first such event happened (the
ESP's time); "sent" counts them on the day they were handed to the ESP. Rates
divide over a period, so a bounce on Tuesday of Monday's mail counts once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from datetime import date, timedelta

from django.core.cache import cache
from django.db.models import Q, QuerySet, Sum
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from ..conf import get_setting
from ..models import METRICS, DailyCount, RollupState

#: Domains counted on their own besides DELIVERABILITY_DOMAINS: the mailbox
#: providers whose filters decide most mail's fate. Every other domain is "".
PROVIDER_DOMAINS = frozenset(
    {
        "gmail.com",
        "googlemail.com",
        "outlook.com",
        "hotmail.com",
        "hotmail.co.uk",
        "hotmail.fr",
        "live.com",
        "msn.com",
        "yahoo.com",
        "yahoo.co.uk",
        "yahoo.fr",
        "ymail.com",
        "aol.com",
        "icloud.com",
        "me.com",
        "mac.com",
        "proton.me",
        "protonmail.com",
        "gmx.de",
        "gmx.net",
        "gmx.com",
        "web.de",
        "t-online.de",
        "orange.fr",
        "free.fr",
        "laposte.net",
        "sfr.fr",
        "wanadoo.fr",
        "comcast.net",
        "yandex.ru",
        "mail.ru",
    }
)


def counted_domain(address_or_domain: str) -> str:
    """The domain as the rollup keeps it: a listed one, or "" (all others)."""
    domain = address_or_domain.rpartition("@")[2].strip().lower()
    if domain in PROVIDER_DOMAINS or domain in {
        d.lower() for d in get_setting("DELIVERABILITY_DOMAINS")
    }:
        return domain
    return ""


@dataclass
class Counts:
    """Recipients per outcome (the rollup's columns), summed over some rows."""

    sent: int = 0
    delivered: int = 0
    deferred: int = 0
    bounced: int = 0
    complained: int = 0
    unsubscribed: int = 0
    opened: int = 0
    clicked: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(*(getattr(self, m) + getattr(other, m) for m in METRICS))

    def rate(self, rate: Rate) -> float | None:
        """``rate`` as a fraction (0.012 is 1.2 %); None when there is nothing to divide by."""
        denominator = getattr(self, rate.denominator)
        if not denominator and rate.fallback:
            denominator = getattr(self, rate.fallback)
        if not denominator:
            return None
        return getattr(self, rate.numerator) / denominator

    def base(self, rate: Rate) -> int:
        """How many recipients ``rate`` divides over."""
        return getattr(self, rate.denominator) or (
            getattr(self, rate.fallback) if rate.fallback else 0
        )


assert tuple(f.name for f in fields(Counts)) == METRICS


@dataclass(frozen=True)
class Threshold:
    level: str  # "warning" or "critical"
    value: float  # a fraction: 0.001 is 0.1 %
    rule: str  # who enforces it and what happens, for the page


@dataclass(frozen=True)
class Rate:
    key: str
    label: str
    numerator: str
    denominator: str
    #: Divide by this when ``denominator`` is 0 (an ESP that sends no "delivered").
    fallback: str = ""
    #: Ascending: the highest one crossed is the rate's level.
    thresholds: tuple[Threshold, ...] = field(default=())


RATES = (
    Rate("delivered", _("Delivered"), "delivered", "sent"),
    Rate(
        "bounce",
        _("Bounce rate"),
        "bounced",
        "sent",
        thresholds=(
            Threshold(
                "warning",
                0.05,
                _("Amazon SES reviews an account at 5 %; other ESPs have similar limits."),
            ),
            Threshold("critical", 0.10, _("Amazon SES may pause sending at 10 %.")),
        ),
    ),
    Rate(
        "complaint",
        _("Spam complaint rate"),
        "complained",
        "delivered",
        fallback="sent",
        thresholds=(
            Threshold(
                "warning",
                0.001,
                _(
                    "Gmail and Yahoo ask bulk senders to stay below 0.1 %; "
                    "Amazon SES reviews an account at 0.1 %."
                ),
            ),
            Threshold(
                "critical",
                0.003,
                _("Gmail and Yahoo: never reach 0.3 % (mail goes to spam or is refused)."),
            ),
        ),
    ),
    Rate("unsubscribe", _("Unsubscribe rate"), "unsubscribed", "delivered", fallback="sent"),
    Rate("open", _("Open rate"), "opened", "delivered", fallback="sent"),
    Rate("click", _("Click rate"), "clicked", "delivered", fallback="sent"),
    Rate("deferred", _("Deferred"), "deferred", "sent"),
)
RATES_BY_KEY = {r.key: r for r in RATES}


@dataclass(frozen=True)
class Crossing:
    rate: Rate
    threshold: Threshold
    value: float


def crossed(counts: Counts) -> list[Crossing]:
    """The thresholds ``counts`` crosses: the highest per rate, given enough volume."""
    found = []
    for rate in RATES:
        value = counts.rate(rate)
        if value is None or counts.base(rate) < get_setting("DELIVERABILITY_MIN_VOLUME"):
            continue
        over = [t for t in rate.thresholds if value >= t.value]
        if over:
            found.append(Crossing(rate, over[-1], value))
    return found


@dataclass(frozen=True)
class Period:
    """Days ``start`` to ``end``, both included (the site's time zone)."""

    start: date
    end: date

    @classmethod
    def last(cls, days: int, today: date | None = None) -> Period:
        today = today or timezone.localdate()
        return cls(today - timedelta(days=days - 1), today)

    def days(self) -> list[date]:
        return [self.start + timedelta(days=n) for n in range((self.end - self.start).days + 1)]


@dataclass(frozen=True)
class Slice:
    """Which mail: None is all; ``domain=""`` is the domains not counted on their own."""

    source: str | None = None
    connector: str | None = None
    domain: str | None = None

    def rows(self, period: Period) -> QuerySet[DailyCount]:
        q = Q(day__gte=period.start, day__lte=period.end)
        for name in ("source", "connector", "domain"):
            value = getattr(self, name)
            if value is not None:
                q &= Q(**{name: value})
        return DailyCount.objects.filter(q)


_SUMS = {m: Sum(m) for m in METRICS}


def _counts(row: dict) -> Counts:
    return Counts(*(row.get(m) or 0 for m in METRICS))


def totals(period: Period, slice: Slice = Slice()) -> Counts:
    return _counts(slice.rows(period).aggregate(**_SUMS))


def daily(period: Period, slice: Slice = Slice()) -> list[tuple[date, Counts]]:
    """One entry per day of ``period``, days without mail as zeros."""
    by_day = {r["day"]: _counts(r) for r in slice.rows(period).values("day").annotate(**_SUMS)}
    return [(day, by_day.get(day, Counts())) for day in period.days()]


BREAKDOWNS = ("domain", "source", "connector")


def breakdowns(
    period: Period, slice: Slice = Slice(), limits: dict[str, int | None] | None = None
) -> dict[str, list[tuple[str, Counts]]]:
    """Counts per domain, per source and per connector, most mail first, from ONE query.

    The rollup has few (source, connector, domain) combinations a day; grouping by all
    three once and folding here reads the period's rows once, not three times.
    """
    limits = limits or {}
    folded: dict[str, dict[str, Counts]] = {by: {} for by in BREAKDOWNS}
    for row in slice.rows(period).values(*BREAKDOWNS).annotate(**_SUMS).order_by():
        counts = _counts(row)
        for by in BREAKDOWNS:
            value = row[by]
            folded[by][value] = folded[by].get(value, Counts()) + counts
    found = {}
    for by, per_value in folded.items():
        ranked = sorted(per_value.items(), key=lambda item: (-item[1].sent, item[0]))
        limit = limits.get(by)
        found[by] = ranked if limit is None else ranked[:limit]
    return found


#: The filter's choices are read from the whole rollup (a full read): kept in the
#: cache this long, and dropped when the rollup gains a row in this process.
CHOICES_SECONDS = 300
CHOICES_KEY = "wagtail_maillog:deliverability:{}"


def choices(name: str) -> list[str]:
    """The values of ``name`` ("source", "connector", "domain") the rollup holds."""
    assert name in BREAKDOWNS

    def read() -> list[str]:
        return list(DailyCount.objects.order_by(name).values_list(name, flat=True).distinct())

    return cache.get_or_set(CHOICES_KEY.format(name), read, CHOICES_SECONDS)


def forget_choices() -> None:
    """The rollup gained rows: a new source, connector or domain may be among them."""
    cache.delete_many([CHOICES_KEY.format(n) for n in (*BREAKDOWNS, "esps")])


def updated_at() -> object:
    """When the rollup last caught up (None: never): the page shows the lag."""
    return RollupState.objects.values_list("updated_at", flat=True).first()


def sum_counts(items: Iterable[Counts]) -> Counts:
    total = Counts()
    for c in items:
        total = total + c
    return total


def connector_esps() -> dict[str, list[str]]:
    """Each connector the rollup holds, with the ESPs its mail went through (for labels)."""

    def read() -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        pairs = DailyCount.objects.values_list("connector", "esp_name")
        for connector, esp_name in pairs.order_by("connector", "esp_name").distinct():
            names = found.setdefault(connector, [])
            if esp_name:
                names.append(esp_name)
        return found

    return cache.get_or_set(CHOICES_KEY.format("esps"), read, CHOICES_SECONDS)
