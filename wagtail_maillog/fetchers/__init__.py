"""Status fetchers: ask the ESP's API about mail whose webhooks never came.

::

    from wagtail_maillog.fetchers import catch_up, pending_recipients

    result = catch_up(pending_recipients(), progress=lambda done, total: ...)

Each connector's backend has a fetcher (built in: Postmark, Mailgun; more
through the ``FETCHERS`` setting). What a fetcher finds goes through
anymail's real ``tracking`` signal and :func:`wagtail_maillog.events.ingest`,
like a webhook: each event is stored once, statuses follow the usual rules.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.utils.module_loading import import_string

from .. import keyset
from ..conf import get_setting
from .base import FetchError, StatusFetcher

if TYPE_CHECKING:
    from django.db.models import QuerySet

    from ..models import Recipient

__all__ = [
    "CatchUpResult",
    "FetchError",
    "StatusFetcher",
    "catch_up",
    "fetcher_for",
    "pending_recipients",
]

logger = logging.getLogger(__name__)

#: {email backend: fetcher}; the ``FETCHERS`` setting is merged over it.
BUILTIN: dict[str, str] = {
    "anymail.backends.postmark.EmailBackend": "wagtail_maillog.fetchers.postmark.PostmarkFetcher",
    "anymail.backends.mailgun.EmailBackend": "wagtail_maillog.fetchers.mailgun.MailgunFetcher",
}


def fetcher_path(backend: str) -> str | None:
    """The fetcher of an email backend (or of the nearest backend it subclasses)."""
    table: dict[str, str | None] = {**BUILTIN, **(get_setting("FETCHERS") or {})}
    if backend in table:
        return table[backend]
    try:
        klass = import_string(backend)
    except ImportError:
        return None
    for parent in getattr(klass, "__mro__", ())[1:]:
        key = f"{parent.__module__}.{parent.__qualname__}"
        if key in table:
            return table[key]
    return None


def _direct_backend() -> tuple[str, dict[str, Any]]:
    """The backend of mail sent without the outbox: MAILERS["default"] or EMAIL_BACKEND."""
    mailers = getattr(settings, "MAILERS", None)  # Django 6.1+
    if mailers:
        spec = mailers.get("default") or {}
        return str(spec.get("BACKEND") or ""), dict(spec.get("OPTIONS") or {})
    return settings.EMAIL_BACKEND, {}


def fetcher_for(connector_name: str) -> StatusFetcher | None:
    """A fetcher for the mail of a connector, or None if its ESP has none.

    ``""`` is the connector of mail sent without the outbox: its backend is
    ``MAILERS["default"]`` (Django 6.1+) or ``EMAIL_BACKEND``.
    """
    from ..outbox.connectors import configured

    if connector_name:
        spec = configured().get(connector_name)
        if spec is None:
            return None
        backend, options = spec["BACKEND"], dict(spec.get("OPTIONS") or {})
    else:
        backend, options = _direct_backend()
    path = fetcher_path(backend) if backend else None
    return import_string(path)(options) if path else None


@dataclass
class CatchUpResult:
    asked: int = 0  # recipients a fetcher was asked about
    events: int = 0  # events the ESPs reported for them
    stored: int = 0  # of those, events not stored before
    changed: int = 0  # recipients whose status changed
    skipped: int = 0  # recipients not asked: no fetcher, another ESP, or their connector failed
    errors: dict[str, str] = field(default_factory=dict)  # connector: what went wrong


def pending_recipients(
    min_age: timedelta = timedelta(minutes=30), max_age: timedelta = timedelta(days=3)
) -> QuerySet[Recipient]:
    """Recipients the ESP took, still without a final status, sent in that age range."""
    from django.utils import timezone

    from ..models import Recipient
    from ..status import FINAL

    now = timezone.now()
    return (
        Recipient.objects.exclude(esp_message_id="")
        .exclude(status__in=FINAL)
        .filter(created_at__lte=now - min_age, created_at__gte=now - max_age)
    )


Row = tuple[int, str, str, str, str, str]  # pk, esp id, address, connector, esp_name, from


class _Run:
    """The state of one :func:`catch_up`: fetchers by connector, and the tally."""

    def __init__(self) -> None:
        self.result = CatchUpResult()
        self.fetchers: dict[str, StatusFetcher | None] = {}

    def fetcher(self, connector: str) -> StatusFetcher | None:
        if connector not in self.fetchers:
            try:
                self.fetchers[connector] = fetcher_for(connector)
            except Exception as exc:  # a missing token, a typo in FETCHERS...
                self.fail(connector, exc)
        return self.fetchers[connector]

    def fail(self, connector: str, exc: BaseException) -> None:
        logger.warning("Status fetcher of connector %r failed: %s", connector, exc)
        self.result.errors.setdefault(connector, f"{type(exc).__name__}: {exc}")
        old = self.fetchers.get(connector)
        if old is not None:
            old.close()
        self.fetchers[connector] = None  # asked no more in this run

    def ask(self, connector: str, rows: list[Row]) -> list[tuple[Any, StatusFetcher]]:
        """The events one connector's fetcher reports for these rows (all or none)."""
        fetcher = self.fetcher(connector)
        mine = [r for r in rows if fetcher is not None and r[4] in ("", fetcher.esp_name)]
        self.result.skipped += len(rows) - len(mine)
        if fetcher is None or not mine:
            return []
        try:
            events = list(
                fetcher.fetch([(r[1], r[2]) for r in mine], from_emails={r[1]: r[5] for r in mine})
            )
        except Exception as exc:
            self.fail(connector, exc)
            self.result.skipped += len(mine)
            return []
        self.result.asked += len(mine)
        return [(event, fetcher) for event in events]

    def close(self) -> None:
        for fetcher in self.fetchers.values():
            if fetcher is not None:
                fetcher.close()


def _store(found: list[tuple[Any, StatusFetcher]], result: CatchUpResult) -> None:
    """Send the events through anymail's ``tracking`` signal, stored as one batch."""
    from anymail.signals import tracking

    from ..events import collecting, ingest

    if not found:
        return
    with collecting() as items:
        for event, fetcher in found:
            tracking.send(sender=type(fetcher), event=event, esp_name=fetcher.esp_name)
    outcome = ingest(items)
    result.events += len(found)
    result.stored += outcome.stored
    result.changed += len(outcome.changes)


def catch_up(
    recipients: QuerySet[Recipient],
    progress: Callable[[int, int], None] | None = None,
    chunk: int = 100,
) -> CatchUpResult:
    """Ask each recipient's ESP what became of it, and store what it says.

    ``recipients`` (not sliced) is read ``chunk`` rows at a time in primary
    key order; rows without an ESP message id are left out. After each
    chunk, ``progress(done, total)`` is called (the last call has
    ``done == total``). A connector whose fetcher fails is recorded in
    ``errors`` and asked no more; the events of the failed request are not
    stored, the other connectors go on.
    """
    queryset = recipients.exclude(esp_message_id="")
    total = queryset.count()
    run = _Run()
    done = 0
    columns = ("esp_message_id", "address", "message__connector", "message__esp_name",
               "message__from_email")  # fmt: skip
    try:
        for rows in keyset.pages(queryset, chunk, *columns):
            by_connector: dict[str, list[Row]] = defaultdict(list)
            for row in rows:
                by_connector[row[3]].append(row)
            found = [
                pair
                for connector, group in by_connector.items()
                for pair in run.ask(connector, group)
            ]
            _store(found, run.result)
            done += len(rows)
            if progress is not None:
                progress(done, max(total, done))
    finally:
        run.close()
    if progress is not None and (done == 0 or done < total):
        progress(done, done)  # nothing to do, or rows left the queryset meanwhile
    return run.result
