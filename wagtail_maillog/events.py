"""Set-based storage of ESP tracking events.

anymail sends its ``tracking`` signal once per event, inside the webhook
request. :func:`collecting` buffers those events and :func:`ingest` writes a
whole batch at once: one query for known events, one for the recipients, one
insert, one update — whatever the batch size.

A request of one event (Postmark, Mailgun, SES, Brevo and Resend post one event
per request) takes its own path, :func:`_ingest_one`: at most three statements,
the address's ``last_event_at`` included (see docs/performance.md).

Matching is on (ESP message id, address), never on the id alone: Postmark and
SparkPost use one id for every recipient of a message.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import re
import zlib
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any, ClassVar

from django.db import connection, connections, transaction
from django.http import QueryDict
from django.utils import timezone

from . import plans, storable
from . import status as rules
from .addresses import normalize
from .bulk import JSONText, column_type, converters, filter_in, insert_rows, update_fields
from .conf import get_setting
from .models import Address, Event, Recipient
from .models.addresses import PROBLEM_FOR_STATUS
from .models.messages import handed_over
from .redaction import redact
from .signals import HEALTH_RECEIVER, status_changed, status_changing
from .sqlite_writers import queued_writer

logger = logging.getLogger("wagtail_maillog")


@dataclass(frozen=True)
class StatusChange:
    recipient_id: int
    address: str
    old: str
    new: str
    event_type: str | None
    reject_reason: str


@dataclass
class IngestResult:
    stored: int = 0
    duplicates: int = 0
    orphans: int = 0
    changes: list[StatusChange] = field(default_factory=list)


_buffer: ContextVar[list[tuple[Any, str]] | None] = ContextVar(
    "wagtail_maillog_event_buffer", default=None
)


@contextmanager
def collecting() -> Iterator[list[tuple[Any, str]]]:
    """Buffer the tracking events sent inside the block instead of storing them."""
    items: list[tuple[Any, str]] = []
    token = _buffer.set(items)
    try:
        yield items
    finally:
        _buffer.reset(token)


def on_tracking(sender: Any, event: Any, esp_name: str, **kwargs: Any) -> None:
    """anymail ``tracking`` receiver: buffer inside a webhook, else store now."""
    items = _buffer.get()
    if items is not None:
        items.append((event, esp_name))
    else:
        ingest([(event, esp_name)])


_SETTING = object()


def jsonable(value: Any, limit: Any = _SETTING) -> Any:
    """The raw ESP payload as JSON-safe data, cut down to ``MAX_RAW_PAYLOAD``
    (or ``limit`` characters, for a caller that read the setting once)."""
    return _encoded(value, limit)[0]


def _encoded(value: Any, limit: Any = _SETTING) -> tuple[Any, str]:
    """:func:`jsonable`'s value, and its JSON text: measuring it against the
    limit encodes it anyway, and the insert writes that text."""
    if isinstance(value, QueryDict):
        value = {k: v[0] if len(v) == 1 else v for k, v in value.lists()}
    elif isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if limit is _SETTING:
        limit = get_setting("MAX_RAW_PAYLOAD")
    try:
        text = json.dumps(value)  # parsed JSON (most ESPs) needs no conversion
        converted = False
    except (TypeError, ValueError):
        text = json.dumps(value, default=str)
        converted = True
    cleaned = storable.json_text(text)  # NUL, lone surrogates: from a fetcher, a signal
    if cleaned is not text:
        text, converted = cleaned, True
    if connection.vendor == "mysql" and _mariadb_refuses(text, value):
        value, converted = _for_mariadb(json.loads(text) if converted else value), False
        text = json.dumps(value)
    if limit and len(text) > limit:
        value = {"truncated": True, "text": text[:limit]}
        return value, json.dumps(value)
    return (json.loads(text) if converted else value), text


#: MariaDB keeps JSON as text with a ``CHECK (JSON_VALID(...))``, which refuses what
#: PostgreSQL's ``jsonb`` and SQLite take: nesting of 32 levels or more, a lone UTF-16
#: surrogate (``"\ud800"``, which ``json.loads`` accepts), NaN and infinities. The
#: insert would fail with an IntegrityError (4025) however often the ESP retried.
MARIADB_JSON_DEPTH = storable.MARIADB_JSON_DEPTH
_SURROGATE_ESCAPE = re.compile(r"\\ud[89a-f]", re.IGNORECASE)
_NOT_FINITE = re.compile(r"\b(?:NaN|-?Infinity)\b")


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, list | tuple):
        return 1 + max(map(_depth, value), default=0)
    return 0


def _mariadb_refuses(text: str, value: Any) -> bool:
    """Whether MariaDB's JSON_VALID could refuse ``text`` (cheap checks first)."""
    return (
        bool(_SURROGATE_ESCAPE.search(text))  # also a valid pair: checked as a whole below
        or bool(_NOT_FINITE.search(text))
        or (
            text.count("[") + text.count("{") > MARIADB_JSON_DEPTH
            and _depth(value) > MARIADB_JSON_DEPTH
        )
    )


def _for_mariadb(value: Any) -> Any:
    """``value`` as MariaDB stores it: U+FFFD for each surrogate, NaN and infinities
    as text, and each object or array nested too deep as its JSON text."""
    return storable.json_value(value, None, max_depth=MARIADB_JSON_DEPTH)


def dedupe_key(esp_name: str, event: Any, raw: Any) -> str:
    """The ESP's event id where it gives one, else a hash of the event's content."""
    if event.event_id:
        # With the recipient: Amazon SES gives all recipients of one notification its id.
        basis = f"id\0{esp_name}\0{event.event_id}\0{_text(event.recipient).strip().lower()}"
    else:
        stamp = event.timestamp.isoformat() if event.timestamp else ""
        content = json.dumps(raw, sort_keys=True, default=str)
        basis = "\0".join(
            [
                "content",
                esp_name,
                str(event.event_type),
                str(event.message_id or ""),
                str(event.recipient or ""),
                stamp,
                content,
            ]
        )
    return hashlib.sha256(basis.encode()).hexdigest()


def _text(value: Any) -> str:
    """An event's text as every database stores it (see :mod:`.storable`)."""
    return "" if value is None else storable.text(str(value))


@dataclass(slots=True)
class EventRow:
    """An event on its way into the database: the values of an :class:`Event` row.

    Plain attributes instead of a model instance: building a thousand model
    instances per webhook POST cost more than storing them.
    """

    esp_name: str
    esp_message_id: str
    address: str
    event_type: str
    timestamp: datetime | None
    event_id: str
    dedupe_key: str
    description: str
    mta_response: str
    reject_reason: str
    click_url: str
    user_agent: str
    raw: Any
    raw_json: str = ""  # ``raw`` encoded, when known: stored as it is
    recipient: Any = None  # set by apply_events: the Recipient (or RecipientState), or None

    #: The columns :func:`insert_events` writes, in this order (then ``received_at``).
    COLUMNS: ClassVar[tuple[str, ...]] = (
        "esp_name",
        "esp_message_id",
        "address",
        "event_type",
        "timestamp",
        "event_id",
        "dedupe_key",
        "description",
        "mta_response",
        "reject_reason",
        "click_url",
        "user_agent",
        "raw",
        "recipient",
    )

    def values(self) -> tuple[Any, ...]:
        return (
            self.esp_name,
            self.esp_message_id,
            self.address,
            self.event_type,
            self.timestamp,
            self.event_id,
            self.dedupe_key,
            self.description,
            self.mta_response,
            self.reject_reason,
            self.click_url,
            self.user_agent,
            JSONText(self.raw_json) if self.raw_json else self.raw,
            None if self.recipient is None else self.recipient.pk,
        )


@dataclass(slots=True)
class RecipientState:
    """What ingesting reads and writes of a :class:`Recipient` (no model instance)."""

    pk: int
    esp_message_id: str
    address: str
    status: str
    status_at: datetime | None
    opened_at: datetime | None
    reason: str

    FIELDS: ClassVar[tuple[str, ...]] = (
        "pk",
        "esp_message_id",
        "address",
        "status",
        "status_at",
        "opened_at",
        "reason",
    )


def event_row(event: Any, esp_name: str, limit: Any = _SETTING) -> EventRow:
    """The row to store for an anymail ``AnymailTrackingEvent``."""
    raw, raw_json = _encoded(event.esp_event, limit)
    # A one-time token is not for staff to read: in a clicked reset or unsubscribe link,
    # and in the copy of the message some ESPs send back (Amazon SES's headers with
    # List-Unsubscribe, Postmark's bounce content with a confirmation link).
    click_url = _text(event.click_url)
    cleaned = redact(raw_json)
    if click_url and redact(click_url) != click_url:
        click_url, raw_json, raw = redact(click_url), cleaned, json.loads(cleaned)
    # Of the payload as it is stored for a clicked token, as sent for the others: the
    # keys of events stored before their payloads were redacted (an ESP's retry).
    key = dedupe_key(esp_name, event, raw)
    if cleaned != raw_json:
        raw_json, raw = cleaned, json.loads(cleaned)
    return EventRow(
        esp_name=esp_name[:64],
        esp_message_id=_text(event.message_id)[:255],
        address=normalize(_text(event.recipient))[:254],
        event_type=_text(event.event_type)[:32],
        timestamp=event.timestamp,
        event_id=_text(event.event_id)[:255],
        dedupe_key=key,
        description=redact(_text(event.description)),
        mta_response=redact(_text(event.mta_response)),
        reject_reason=_text(event.reject_reason)[:32],
        click_url=click_url,
        user_agent=_text(event.user_agent),
        raw=raw,
        raw_json=raw_json,
    )


def insert_events(rows: list[EventRow]) -> None:
    """One INSERT of all rows, received now; an event stored meanwhile (same dedupe key)
    is skipped."""
    received_at = timezone.now()
    insert_rows(
        Event, (*EventRow.COLUMNS, "received_at"), ((*row.values(), received_at) for row in rows)
    )


def lock_esp_ids(esp_ids: Iterable[str]) -> None:
    """PostgreSQL: one transaction at a time per ESP message id, until commit.

    Storing events and storing the ESP's answer (which adopts orphans) take
    these locks before reading each other's rows, so an event that finds no
    recipient is always seen by the answer's adoption, and the other way round.
    """
    keys = sorted({zlib.crc32(i.encode()) for i in esp_ids if i})
    if keys and connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(k) FROM unnest(%s::bigint[]) AS k", [keys])


def _known_keys(keys: list[str]) -> set[str]:
    known: set[str] = set()
    for events in filter_in(Event.objects.all(), "dedupe_key", keys):
        known.update(events.values_list("dedupe_key", flat=True))
    return known


def _recipients_for(esp_ids: Iterable[str]) -> list[RecipientState]:
    """The recipients with these ESP ids, locked (PostgreSQL) against lost updates."""
    locked = Recipient.objects.select_for_update(
        no_key=connection.features.has_select_for_no_key_update
    ).order_by("pk")
    found: list[RecipientState] = []
    taken = locked.exclude(esp_message_id="")  # maillog_rcpt_espid's condition
    for recipients in filter_in(taken, "esp_message_id", sorted(set(esp_ids))):
        found.extend(
            RecipientState(*values) for values in recipients.values_list(*RecipientState.FIELDS)
        )
    return found


def _failure_reason(row: EventRow | Event) -> str:
    return row.description or row.mta_response or row.reject_reason


def apply_events(
    rows: Sequence[EventRow | Event], recipients: Sequence[RecipientState | Recipient]
) -> tuple[list[Any], list[StatusChange]]:
    """Attach each event to its recipient(s) and move their statuses.

    Sets ``row.recipient`` (left empty for orphans) and changes ``recipients``
    in memory; returns the changed ones (not those an event left as they were:
    a late "delivered") and the changes, for the caller to save.
    """
    by_address: dict[tuple[str, str], list[Any]] = defaultdict(list)
    by_id: dict[str, list[Any]] = defaultdict(list)
    for r in recipients:
        by_address[(r.esp_message_id, r.address)].append(r)
        by_id[r.esp_message_id].append(r)

    before = {r.pk: r.status for r in recipients}
    saved: dict[int, tuple[Any, ...]] = {}
    touched: dict[int, Any] = {}
    last_event: dict[int, Any] = {}
    for row in rows:
        targets = by_address.get((row.esp_message_id, row.address), [])
        if not targets and not row.address and len(by_id.get(row.esp_message_id, [])) == 1:
            targets = by_id[row.esp_message_id]  # a message-level event, one recipient
        row.recipient = targets[0] if targets else None
        new_status = rules.status_for_event(row.event_type, row.reject_reason or None)
        at = row.timestamp or timezone.now()
        for r in targets:
            if r.pk not in touched:
                touched[r.pk] = r
                saved[r.pk] = (r.status, r.status_at, r.opened_at, r.reason)
            if new_status in rules.ENGAGED and (r.opened_at is None or at < r.opened_at):
                r.opened_at = at
            if new_status is None:
                continue
            current = rules.Current(r.status, r.status_at)
            after = rules.transition(current, new_status, at)
            if after != current:
                r.status, r.status_at = after.status, after.at
                last_event[r.pk] = row
                if new_status in rules.FAILURES:
                    r.reason = _failure_reason(row)

    changes = [
        StatusChange(
            recipient_id=r.pk,
            address=r.address,
            old=before[r.pk],
            new=r.status,
            event_type=last_event[r.pk].event_type if r.pk in last_event else None,
            reject_reason=last_event[r.pk].reject_reason if r.pk in last_event else "",
        )
        for r in touched.values()
        if r.status != before[r.pk]
    ]
    changed = [
        r for r in touched.values() if (r.status, r.status_at, r.opened_at, r.reason) != saved[r.pk]
    ]
    return changed, changes


def _save_recipients(recipients: list[Any]) -> None:
    update_fields(recipients, ["status", "status_at", "opened_at", "reason"], model=Recipient)


def announce(changes: list[StatusChange], last_event_stored: bool = False) -> None:
    """Address health now, in the caller's transaction; ``status_changed`` after commit.

    ``last_event_stored``: the caller already set ``Address.last_event_at`` of the
    changes' addresses (the one-event path folds it into its own statements).

    Address health (a bounce marks the address) is part of storing the events:
    if it fails, nothing is stored and the webhook answers 503, so the ESP's
    retry applies both. Run after the commit instead, a failure there was
    answered 503 too, but the retry found every event stored and the address
    kept its old status. Other apps' receivers still run after the commit,
    each on its own: one that fails is logged and cannot undo or repeat what
    is stored.
    """
    if not changes:
        return
    # Address health (apps.ready).
    status_changing.send(sender=Event, changes=changes, last_event_stored=last_event_stored)
    transaction.on_commit(partial(_notify, changes))


def _notify(changes: list[StatusChange]) -> None:
    for receiver, result in status_changed.send_robust(sender=Event, changes=changes):
        if isinstance(result, Exception):
            logger.error(
                "wagtail_maillog: status_changed receiver %r failed", receiver, exc_info=result
            )


def ingest(items: Iterable[tuple[Any, str]]) -> IngestResult:
    """Store a batch of (anymail tracking event, esp_name) pairs, all or nothing."""
    prepared: dict[str, EventRow] = {}
    duplicates = 0
    limit = get_setting("MAX_RAW_PAYLOAD")
    for event, esp_name in items:
        row = event_row(event, esp_name, limit)
        if row.dedupe_key in prepared:
            duplicates += 1
        else:
            prepared[row.dedupe_key] = row
    result = IngestResult(duplicates=duplicates)
    if not prepared:
        return result

    if len(prepared) == 1:
        row = next(iter(prepared.values()))
        if _unlocked(row) and _ingest_unlocked(row, result):
            return result
        # SQLite: built before BEGIN IMMEDIATE takes the database's one write lock.
        first = _first_insert(row) if _returns_from_insert() else None
        with queued_writer(connection), transaction.atomic():
            _ingest_one(row, result, first)
        return result
    with queued_writer(connection), transaction.atomic():
        known = _known_keys(list(prepared))
        rows = [row for key, row in prepared.items() if key not in known]
        result.duplicates += len(known)
        if not rows:
            return result
        lock_esp_ids(r.esp_message_id for r in rows)
        recipients = _recipients_for(r.esp_message_id for r in rows if r.esp_message_id)
        changed, result.changes = apply_events(rows, recipients)
        # A concurrent request may have stored the same event meanwhile: the
        # unique key keeps it once, and re-applying a status is harmless.
        insert_events(rows)
        _save_recipients(changed)
        result.stored = len(rows)
        result.orphans = sum(1 for r in rows if r.recipient is None)
        announce(result.changes)
    return result


# ---- one event ---------------------------------------------------------------
#
# ESPs that post one event per request make the statements, not the rows, what a
# request costs. The batch path above takes 5 to 7 for one event; this one at most
# three (plus BEGIN and COMMIT), each database its own way:
#
# SQLite (one writer at a time): the INSERT comes first, picks the event's recipient
#   itself and returns the state of the recipients it concerns; a repeated event
#   inserts nothing and costs that one statement. Then the recipients' UPDATE and
#   the address's ``last_event_at``.
# PostgreSQL, most events (:func:`_ingest_unlocked`): two statements and no
#   transaction of their own. The SELECT reads the recipients without a lock; the
#   write is one statement that first locks them where they still have the state the
#   SELECT read (compare-and-set), and stores the event (and moves them) only if they
#   all do; on a connection that outlives the request, the same statement inside a
#   function whose plan the session keeps (migration 0016). When another request
#   moved one meanwhile, nothing is written and the event takes the locked path:
# PostgreSQL, locked: one SELECT says whether the event is stored already and, if not,
#   reads and locks (``FOR NO KEY UPDATE``) the recipients; then one statement
#   writes the event, the recipients and the address (data-modifying CTEs), each
#   write only if the INSERT stored the event. An event whose ESP id no recipient
#   has takes the advisory lock of the id (see :func:`lock_esp_ids`) before it is
#   stored, and its INSERT looks for the recipient again after the lock. (Where
#   recipients have the id but none the event's address, the hand-over that stored
#   the id has committed: the event is an orphan, stored without the lock.)
# MariaDB/MySQL: the same SELECT, locking in any case (InnoDB's row locks cost no
#   write); ``INSERT IGNORE`` (the affected rows tell whether the event was new);
#   one UPDATE of the recipients joined to the address.
#
# The rules are the batch's: :func:`apply_events` moves the statuses in Python. A
# change that gives the address a problem status (a bounce) is written by address
# health (``status_changing``), with the address's ``last_event_at``: 2-3 statements
# more.


def _ingest_one(
    row: EventRow, result: IngestResult, first: tuple[str, list[Any]] | None = None
) -> None:
    """Store one event (inside the caller's transaction), in at most three statements
    when its status change needs no change of an address's status.

    ``first``: SQLite's INSERT of the event (:func:`_insert_first`)."""
    _count(row, result, _insert_first(row, first) if first is not None else _read_first(row))


def _count(row: EventRow, result: IngestResult, changes: list[StatusChange] | None) -> None:
    """``result`` of one event: ``changes`` None means it was stored already."""
    if changes is None:
        result.duplicates += 1
    else:
        result.stored, result.orphans = 1, int(row.recipient is None)
        result.changes = changes


def _unlocked(row: EventRow) -> bool:
    """Whether ``row`` may take the PostgreSQL path without a transaction: its status
    marks no address (a bounce's address health writes in the store's transaction),
    and no other app listens to ``status_changing`` (whose receivers run in it)."""
    return (
        connection.vendor == "postgresql"
        and rules.status_for_event(row.event_type, row.reject_reason or None)
        not in PROBLEM_FOR_STATUS
        and all(entry[0][0] == HEALTH_RECEIVER for entry in status_changing.receivers)
    )


def _ingest_unlocked(row: EventRow, result: IngestResult) -> bool:
    """PostgreSQL: store one event in two statements, each its own transaction (see
    the comment above :func:`_ingest_one`). False: nothing was written, and the
    event takes the locked path (another request moved one of its recipients after
    the SELECT)."""
    recipients, stored = _locked_recipients(row, lock=False)
    if stored:
        _count(row, result, None)
        return True
    read = _values(recipients)
    changed, changes = apply_events([row], recipients)
    if row.esp_message_id and not recipients:
        with transaction.atomic():  # its mail may be being handed over: the advisory lock
            _count(row, result, _store_unmatched(row))
        return True
    addresses = _touched_addresses(changes)
    inserted, as_read = _write_postgresql(row, changed, addresses, timezone.now(), read)
    if not inserted and not as_read:
        return False
    if inserted:
        announce(changes, last_event_stored=True)  # no transaction: status_changed at once
    _count(row, result, changes if inserted else None)  # else stored by another meanwhile
    return True


def _returns_from_insert() -> bool:
    """SQLite 3.35+ with JSON1 (what Django's JSONField needs anyway)."""
    features = connection.features
    return (
        connection.vendor == "sqlite"
        and features.can_return_columns_from_insert
        and features.supports_json_field
    )


def _quote(name: str) -> str:
    return connection.ops.quote_name(name)


@functools.cache
def _event_fields() -> tuple[Any, ...]:
    return tuple(Event._meta.get_field(name) for name in (*EventRow.COLUMNS, "received_at"))


def _event_values(row: EventRow) -> list[Any]:
    """``row``'s values for :func:`_event_fields`, prepared, ``received_at`` now."""
    return _convert(_event_fields(), (*row.values(), timezone.now()))


def _event_into() -> str:
    """The event table and its columns of :func:`_event_fields`, as an INSERT names them."""
    columns = ", ".join(_quote(f.column) for f in _event_fields())
    return f"{_quote(Event._meta.db_table)} ({columns})"


def _convert(fields: Sequence[Any], values: Sequence[Any]) -> list[Any]:
    """``values`` prepared for their ``fields`` as a save would (:func:`.bulk.converters`,
    built once per connection, not per request)."""
    prepared = converters(fields, connection)
    return [convert(v) for convert, v in zip(prepared, values, strict=True)]


def _cast(field: Any) -> str:
    """A placeholder typed as ``field``'s column on PostgreSQL (a value of a CTE or a
    VALUES list has no column to take its type from), plain elsewhere."""
    if connection.vendor != "postgresql":
        return "%s"
    return f"%s::{_type(field)}"


def _type(field: Any) -> str:
    """``field``'s column type on PostgreSQL, without its length."""
    return column_type(field, connection)


def _event_insert(row: EventRow, match: bool) -> tuple[str, list[Any]]:
    """The INSERT of ``row`` (without its conflict clause) and its parameters; it
    inserts nothing when the event is stored already.

    ``match``: the statement finds the recipient itself, as :func:`apply_events`
    would: the lowest pk with the event's ESP id and address; for an event without
    an address, the message's only recipient.
    """
    params = _event_values(row)
    finds = "" if not (match and row.esp_message_id) else "address" if row.address else "only"
    if finds:
        index = EventRow.COLUMNS.index("recipient")
        ids = [row.esp_message_id, row.address if finds == "address" else row.esp_message_id]
        params[index : index + 1] = ids
    if connection.vendor != "mysql":
        params.append(row.dedupe_key)
    return _event_insert_sql(connection.alias, connection.vendor, finds), params


@functools.cache
def _event_insert_sql(alias: str, vendor: str, finds: str) -> str:
    """:func:`_event_insert`'s SQL, the same for every event of a kind: built once.

    ``finds``: how the INSERT picks the recipient ("address": by the event's ESP id
    and address; "only": the message's only recipient; "": given as a parameter).
    """
    fields = _event_fields()
    placeholders = [_cast(f) for f in fields]
    recipient = _quote(Recipient._meta.db_table)
    index = EventRow.COLUMNS.index("recipient")
    if finds == "address":
        placeholders[index] = (
            f"(SELECT MIN(id) FROM {recipient} WHERE esp_message_id = %s AND address = %s "
            f"AND {handed_over()})"
        )
    elif finds == "only":
        placeholders[index] = (
            f"COALESCE((SELECT MIN(id) FROM {recipient} "
            f"WHERE esp_message_id = %s AND address = '' AND {handed_over()}), "
            "(SELECT CASE WHEN COUNT(*) = 1 THEN MIN(id) END "
            f"FROM {recipient} WHERE esp_message_id = %s AND {handed_over()}))"
        )
    table = _quote(Event._meta.db_table)
    into = _event_into()
    if vendor == "mysql":
        return f"INSERT IGNORE INTO {into} VALUES ({', '.join(placeholders)})"
    # Not even tried when stored already: on SQLite a refused INSERT still writes
    # (AUTOINCREMENT's counter), which made a repeated event a write transaction.
    return (
        f"INSERT INTO {into} SELECT {', '.join(placeholders)} "
        f"WHERE NOT EXISTS (SELECT 1 FROM {table} WHERE dedupe_key = %s)"
    )


def _first_insert(row: EventRow) -> tuple[str, list[Any]]:
    """SQLite: the INSERT of the event, returning its recipient, the recipients it
    concerns and whether its address has an :class:`Address` row (most recipients of
    a site's mail are nobody's member: their events then move no ``last_event_at``)."""
    sql, params = _event_insert(row, match=True)
    if row.esp_message_id:
        params += [row.esp_message_id, row.address]
    if row.address:
        params.append(normalize(row.address))
    return sql + _first_returning(bool(row.esp_message_id), bool(row.address)), params


@functools.cache
def _first_returning(esp_id: bool, address: bool) -> str:
    """:func:`_first_insert`'s conflict and RETURNING clauses, built once per kind."""
    returning = f"{_quote(Event._meta.db_table)}.{_quote('recipient_id')}"
    targets = "NULL"
    if esp_id:
        targets = (
            "(SELECT json_group_array(json_array(r.id, r.address, r.status, r.status_at, "
            f"r.opened_at, r.reason)) FROM {_quote(Recipient._meta.db_table)} AS r "
            f"WHERE r.esp_message_id = %s AND {handed_over('r.esp_message_id')} "
            f"AND (r.address = %s OR r.id = {returning}))"
        )
    member = "1"  # no address: the message's only recipient, whoever it is (the UPDATE asks)
    if address:
        member = (
            f"EXISTS (SELECT 1 FROM {_quote(Address._meta.db_table)} WHERE "
            f"{_quote('address')} = %s)"
        )
    return f" ON CONFLICT DO NOTHING RETURNING {returning}, {targets}, {member}"


def _insert_first(row: EventRow, first: tuple[str, list[Any]]) -> list[StatusChange] | None:
    """SQLite: INSERT the event (``first``), returning its recipient and the recipients
    it concerns; then move them (the write lock is held from the INSERT on: nobody
    else writes). The status changes; None: the event was stored already."""
    with connection.cursor() as cursor:
        cursor.execute(*first)
        found = cursor.fetchone()
    if found is None:
        return None  # stored already: one statement
    recipients = sorted(
        (
            _state((pk, row.esp_message_id, address, status, at, opened, reason))
            for pk, address, status, at, opened, reason in json.loads(found[1] or "[]")
        ),
        key=lambda r: r.pk,
    )
    changed, changes = apply_events([row], recipients)  # the INSERT's recipient is row.recipient
    _save_recipients(changed)
    addresses = _touched_addresses(changes)
    if addresses and found[2]:
        Address.objects.filter(address__in=addresses).update(last_event_at=timezone.now())
    announce(changes, last_event_stored=True)
    return changes


def _touched_addresses(changes: list[StatusChange]) -> list[str]:
    """The addresses whose ``last_event_at`` the one-event path moves itself: those of
    its status changes, but for a change that marks the address (a bounce), which
    address health writes with the address's new status."""
    return sorted({normalize(c.address) for c in changes if c.new not in PROBLEM_FOR_STATUS})


def _read_first(row: EventRow) -> list[StatusChange] | None:
    """PostgreSQL, MariaDB/MySQL (and SQLite before 3.35): read and lock the recipients,
    with whether the event is stored already; then write. As :func:`_insert_first`."""
    recipients, stored = _locked_recipients(row)
    if stored:
        return None  # stored already: one statement
    changed, changes = apply_events([row], recipients)
    if row.recipient is None and not recipients and row.esp_message_id:
        return _store_unmatched(row)
    now = timezone.now()
    addresses = _touched_addresses(changes)
    if connection.vendor == "postgresql":
        inserted, _same = _write_postgresql(row, changed, addresses, now)
    else:
        inserted = _execute_insert(row)
        if inserted and changed:
            if connection.vendor == "mysql":
                _update_mysql(changed, addresses, now)
            else:
                _save_recipients(changed)
                if addresses:
                    Address.objects.filter(address__in=addresses).update(last_event_at=now)
    if not inserted:
        return None
    announce(changes, last_event_stored=True)
    return changes


def _locked_recipients(row: EventRow, lock: bool = True) -> tuple[list[RecipientState], bool]:
    """The recipients with the event's ESP id, locked (PostgreSQL, MariaDB/MySQL), and
    whether the event is stored already (known when there is a recipient, and always
    on PostgreSQL's locked read). Plain SQL: the queryset cost more to build than the
    query took, a repeated event's whole request.

    ``lock=False`` (PostgreSQL): read without locking (:func:`_ingest_unlocked`)."""
    if not row.esp_message_id:
        return [], False
    vendor = connection.vendor
    if vendor == "postgresql" and lock:
        params = [row.esp_message_id, row.dedupe_key, row.dedupe_key]
    else:
        params = [row.dedupe_key, row.esp_message_id]
    sql = _recipients_sql(connection.alias, vendor, lock)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        found = cursor.fetchall()
    recipients = [_state(values[:-1]) for values in found if values[0] is not None]
    return recipients, bool(found and found[0][-1])


@functools.cache
def _recipients_sql(alias: str, vendor: str, lock: bool) -> str:
    """:func:`_locked_recipients`'s SELECT, the same for every event: built once."""
    recipient, event = _quote(Recipient._meta.db_table), _quote(Event._meta.db_table)
    columns = ", ".join(f"r.{_quote(name)}" for name in _STATE_COLUMNS)
    stored = f"EXISTS (SELECT 1 FROM {event} WHERE dedupe_key = %s)"
    if vendor == "postgresql" and lock:
        # Locked only when the event is new: a row lock is written into the row, so
        # locking for an event stored already made its request a writing transaction
        # (a WAL flush at commit). InnoDB keeps its row locks in memory.
        return (
            f"WITH locked AS (SELECT {columns} FROM {recipient} AS r "
            f"WHERE r.esp_message_id = %s AND {handed_over('r.esp_message_id')} "
            f"AND NOT {stored} ORDER BY r.id FOR NO KEY UPDATE) "
            f"SELECT locked.*, {stored} FROM (SELECT 1) AS one LEFT JOIN locked ON TRUE "
            "ORDER BY locked.id"
        )
    # PostgreSQL's unlocked read too: an event whose ESP id no recipient has is stored
    # by :func:`_store_unmatched`, whose INSERT finds it stored already.
    features = connections[alias].features
    locking = " FOR UPDATE" if lock and features.has_select_for_update else ""
    return (
        f"SELECT {columns}, {stored} FROM {recipient} AS r "
        f"WHERE r.esp_message_id = %s AND {handed_over('r.esp_message_id')} "
        f"ORDER BY r.id{locking}"
    )


#: The columns of :class:`RecipientState`'s fields.
_STATE_COLUMNS = ("id", "esp_message_id", "address", "status", "status_at", "opened_at", "reason")


def _state(values: Sequence[Any]) -> RecipientState:
    """A :class:`RecipientState` from the values of :data:`_STATE_COLUMNS`, as read by
    plain SQL: times as Django reads them (aware; SQLite gives text, MySQL naive)."""
    pk, esp_id, address, status, at, opened, reason = values
    return RecipientState(pk, esp_id, address, status, _aware(at), _aware(opened), reason)


def _aware(value: Any) -> datetime | None:
    if value is None or (isinstance(value, datetime) and value.tzinfo is not None):
        return value
    return connection.ops.convert_datetimefield_value(value, None, connection)


def _execute_insert(row: EventRow, match: bool = False) -> bool:
    """INSERT the event unless stored already; whether it was inserted."""
    sql, params = _event_insert(row, match)
    if connection.vendor != "mysql":
        sql += " ON CONFLICT DO NOTHING"
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount == 1


def _store_unmatched(row: EventRow) -> list[StatusChange] | None:
    """An event whose ESP id no recipient has (yet): stored as an orphan.

    PostgreSQL: its mail may be being handed over right now. The advisory lock of
    the ESP id waits for that hand-over's transaction (which takes it before it
    stores the id and adopts orphans), and the INSERT, a statement after the lock,
    looks for the recipient again: either it finds it, or the adoption finds the
    event. The SELECT before held no recipient's lock, so this takes the locks in
    the order the hand-over and the batch path take them (advisory lock first).
    """
    if connection.vendor != "postgresql":
        return [] if _execute_insert(row) else None
    lock_esp_ids([row.esp_message_id])
    sql, params = _event_insert(row, match=True)
    with connection.cursor() as cursor:
        cursor.execute(f"{sql} ON CONFLICT DO NOTHING RETURNING {_quote('recipient_id')}", params)
        found = cursor.fetchone()
    if found is None:
        return None
    if found[0] is None:
        return []
    # The hand-over committed between the SELECT and the lock: move the status now.
    changed, changes = apply_events([row], _recipients_for([row.esp_message_id]))
    _save_recipients(changed)
    announce(changes)
    return changes


#: What the one-event path writes of each recipient it moved, its key first.
_MOVED = ("id", "status", "status_at", "opened_at", "reason")


def _values(recipients: Iterable[Any]) -> list[tuple[Any, ...]]:
    """The values of :data:`_MOVED` of each recipient."""
    return [(r.pk, r.status, r.status_at, r.opened_at, r.reason) for r in recipients]


@functools.cache
def _moved_fields() -> tuple[Any, ...]:
    return tuple(Recipient._meta.get_field(name) for name in _MOVED)


def _moved(rows: list[tuple[Any, ...]]) -> tuple[tuple[Any, ...], list[Any]]:
    """The fields of :data:`_MOVED`, and ``rows`` (:func:`_values`) prepared, row after row."""
    fields = _moved_fields()
    return fields, [value for values in rows for value in _convert(fields, values)]


def _write_postgresql(
    row: EventRow,
    changed: list[Any],
    addresses: list[str],
    now: datetime,
    read: list[tuple[Any, ...]] | None = None,
) -> tuple[bool, bool]:
    """One statement: the event's INSERT, and only if it inserted, the recipients' and
    the addresses' UPDATEs (data-modifying CTEs).

    ``read``: (pk, status, status_at, opened_at, reason) of the recipients as an
    unlocked SELECT read them. The statement first locks those that still have these
    values (a lock that waits for a concurrent writer sees its committed row), and
    inserts only if it locked them all (compare-and-set).

    On a connection that outlives the request, the function of migration 0016
    (:data:`STORE_ONE_EVENT`), which holds the same statement and whose plan the
    database session keeps; otherwise the statement (:func:`_postgresql_write_sql`).

    Whether the event was inserted, and whether the recipients were as read.
    """
    read = read or []
    event = _event_values(row)
    if plans.keeps_plans(connection):
        sizes = (_size(read), _size(changed), _size(addresses))
        sql = _function_call_sql(connection.alias, *sizes)
        params = [
            *_arrays(_columns(read), sizes[0]),
            *event,
            *_arrays(_columns(_values(changed)), sizes[1]),
            *_arrays([addresses], sizes[2]),
            now,
        ]
    else:
        sql = _postgresql_write_sql(connection.alias, len(read), len(changed), bool(addresses))
        params = [*_moved(read)[1], *event]
        if len(read) > 1:
            params.append(len(read))
        moved = _moved(_values(changed))[1]
        if len(changed) == 1:  # SET its values WHERE its key
            moved = [*moved[1:], moved[0]]
        params += moved
        if addresses:
            params += [now, addresses]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        inserted, found = cursor.fetchone()
    return inserted == 1, found == len(read)


@functools.cache
def _postgresql_write_sql(alias: str, read: int, changed: int, addresses: bool) -> str:
    """:func:`_write_postgresql`'s statement for ``read`` recipients read, ``changed``
    of them moved, and whether addresses' ``last_event_at`` moves: built once.

    Its parts are chained by their rows (``FROM chk``, ``FROM ins``), not by
    subqueries, and one recipient is named by its key, not joined to a VALUES list:
    PostgreSQL parses and plans it at every request (most of its time), and each
    subquery or join is planned.
    """
    into = _event_into()
    placeholders = ", ".join(_cast(f) for f in _event_fields())
    moved = _moved_fields()
    values = f"({', '.join(_cast(f) for f in moved)})"
    columns = [_quote(name) for name in _MOVED]
    recipient = _quote(Recipient._meta.db_table)
    parts = []
    # No NOT EXISTS on the event's key: the SELECT before found it not stored, and
    # ON CONFLICT keeps an event stored meanwhile once.
    if read == 1:
        same = " AND ".join(f"r.{c} IS NOT DISTINCT FROM %s" for c in columns[1:])
        parts.append(
            f"chk AS (SELECT r.id FROM {recipient} AS r WHERE r.id = %s AND {same} "
            "FOR NO KEY UPDATE)"
        )
        insert = f"INSERT INTO {into} SELECT {placeholders} FROM chk"
    elif read:
        same = " AND ".join(f"r.{c} IS NOT DISTINCT FROM o.{c}" for c in columns[1:])
        parts.append(
            f"chk AS (SELECT r.id FROM {recipient} AS r "
            f"JOIN (VALUES {', '.join([values] * read)}) AS o({', '.join(columns)}) "
            f"ON r.id = o.id AND {same} FOR NO KEY UPDATE OF r)"
        )
        insert = f"INSERT INTO {into} SELECT {placeholders} WHERE (SELECT COUNT(*) FROM chk) = %s"
    else:
        insert = f"INSERT INTO {into} VALUES ({placeholders})"
    parts.append(f"ins AS ({insert} ON CONFLICT DO NOTHING RETURNING 1)")
    if changed == 1:
        assignments = ", ".join(f"{c} = %s" for c in columns[1:])
        parts.append(f"rcp AS (UPDATE {recipient} AS r SET {assignments} FROM ins WHERE r.id = %s)")
    elif changed:
        assignments = ", ".join(f"{c} = v.{c}" for c in columns[1:])
        parts.append(
            f"rcp AS (UPDATE {recipient} AS r SET {assignments} "
            f"FROM ins, (VALUES {', '.join([values] * changed)}) AS v({', '.join(columns)}) "
            "WHERE r.id = v.id)"
        )
    if addresses:
        parts.append(
            f"adr AS (UPDATE {_quote(Address._meta.db_table)} SET last_event_at = %s "
            "FROM ins WHERE address = ANY(%s))"
        )
    locked = "(SELECT COUNT(*) FROM chk)" if read else "0"
    return f"WITH {', '.join(parts)} SELECT (SELECT COUNT(*) FROM ins), {locked}"


#: The PostgreSQL function of migration 0016: :func:`_postgresql_write_sql`'s statement
#: for any number of recipients, its plan kept by the database session.
STORE_ONE_EVENT = "wagtail_maillog_store_one_event"


def _columns(rows: list[tuple[Any, ...]]) -> list[list[Any]]:
    """``rows`` (:func:`_values`) prepared, as one list per column of :data:`_MOVED`."""
    fields = _moved_fields()
    prepared = [_convert(fields, values) for values in rows]
    if not prepared:
        return [[] for _ in fields]
    return [list(column) for column in zip(*prepared, strict=True)]


def _size(values: Sequence[Any]) -> int:
    """How an array of ``values`` goes to the function: 0, 1 or 2 (more than one)."""
    return min(len(values), 2)


def _arrays(columns: list[list[Any]], size: int) -> list[Any]:
    """The parameters of ``columns`` arrays of ``size`` (:func:`_size`): none when
    empty, the value when one, else the list."""
    if size == 1:
        return [column[0] for column in columns]
    return columns if size else []


def _array(type_: str, size: int) -> str:
    """The placeholder of an array argument of ``size`` (:func:`_size`).

    An empty array or one of one value is written in the SQL (``ARRAY[%s::type]``):
    the client then quotes its value as it quotes any other, where dumping a list
    as an array literal cost most of the call's Python time (one value is the
    commonest: one recipient read, moved, one address touched)."""
    if size == 0:
        return f"ARRAY[]::{type_}[]"
    return f"ARRAY[%s::{type_}]" if size == 1 else f"%s::{type_}[]"


@functools.cache
def _function_call_sql(alias: str, read: int, changed: int, touched: int) -> str:
    """The call of :data:`STORE_ONE_EVENT`: the recipients as read, the event, the
    recipients' new values (one array per column), the addresses and their time.

    ``read``, ``changed``, ``touched``: each array's size (:func:`_size`). The
    function's plan is the same for every size."""
    moved = [_type(field) for field in _moved_fields()]
    event = [_cast(field) for field in _event_fields()]
    touched_type = _type(Address._meta.get_field("address"))
    at = _type(Address._meta.get_field("last_event_at"))
    arguments = [
        *(_array(t, read) for t in moved),
        *event,
        *(_array(t, changed) for t in moved),
        _array(touched_type, touched),
        f"%s::{at}",
    ]
    return f"SELECT inserted, locked FROM {STORE_ONE_EVENT}({', '.join(arguments)})"


def _update_mysql(changed: list[Any], addresses: list[str], now: datetime) -> None:
    """MariaDB/MySQL: one UPDATE of the recipients joined to their new values and, when
    a status changed, to the address (a multi-table UPDATE; an address without a row
    is left alone)."""
    fields, values = _moved(_values(changed))
    width = len(fields)
    columns = [_quote(name) for name in _MOVED]
    first = "SELECT " + ", ".join(f"%s AS {c}" for c in [*columns, "touch"])
    other = " UNION ALL SELECT " + ", ".join(["%s"] * (width + 1))
    params: list[Any] = []
    for n, r in enumerate(changed):
        touch = normalize(r.address)
        params += [*values[n * width : (n + 1) * width], touch if touch in addresses else None]
    params += _convert([Address._meta.get_field("last_event_at")], [now])
    recipient, address = _quote(Recipient._meta.db_table), _quote(Address._meta.db_table)
    assignments = ", ".join(f"{recipient}.{c} = v.{c}" for c in columns[1:])
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {recipient} JOIN ({first}{other * (len(changed) - 1)}) AS v "
            f"ON {recipient}.id = v.id LEFT JOIN {address} ON {address}.address = v.touch "
            f"SET {assignments}, {address}.last_event_at = %s",
            params,
        )


def attach_orphans(recipients: list[Recipient]) -> list[StatusChange]:
    """Give orphan events of these (just sent) recipients their owner, in order."""
    esp_ids = sorted({r.esp_message_id for r in recipients if r.esp_message_id})
    if not esp_ids:
        return []
    orphans: list[Event] = []
    for events in filter_in(
        Event.objects.filter(recipient__isnull=True), "esp_message_id", esp_ids
    ):
        orphans.extend(events.order_by("pk"))
    if not orphans:
        return []
    changed, changes = apply_events(orphans, recipients)
    update_fields([o for o in orphans if o.recipient is not None], ["recipient"])
    _save_recipients(changed)
    announce(changes)
    return changes
