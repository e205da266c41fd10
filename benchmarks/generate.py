"""Fill the mail log with realistic history, fast: the database makes the rows.

    DJANGO_SETTINGS_MODULE=benchmarks.settings python -m benchmarks.generate --messages 1000000

Each chunk is three ``INSERT ... SELECT`` statements over a number series
(``generate_series`` on PostgreSQL, a recursive CTE on SQLite, a table of the
SEQUENCE engine on MariaDB): messages,
their recipients (one each), then the events of each recipient, joined from a
small table of status trails. No row passes through Python, so a million
messages take seconds, not minutes, and memory stays flat.

The mix is realistic and reproducible (a multiplicative hash of the row
number, not a random generator): most mail delivered, many opened, some
clicked, a few bounced, deferred, complained or rejected; dates spread over
the last ``days`` days. The addresses (``user<n>@<domain>``) are all
distinct, so a search by a whole address finds one row: the index lookup
itself, not a page of matches, is what the "recipient search" measures.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from .harness import analyze

#: (final status, share, event types that led there)
MIX: list[tuple[str, float, tuple[str, ...]]] = [
    ("delivered", 0.45, ("delivered",)),
    ("opened", 0.30, ("delivered", "opened")),
    ("clicked", 0.10, ("delivered", "opened", "clicked")),
    ("bounced", 0.05, ("deferred", "bounced")),
    ("deferred", 0.03, ("deferred",)),
    ("invalid", 0.02, ("bounced",)),
    ("complained", 0.01, ("delivered", "complained")),
    ("rejected", 0.01, ("rejected",)),
    ("queued", 0.03, ()),
]
SOURCES = ["newsletter", "invoice", "welcome", "password_reset", "form", "system"]
DOMAINS = ["example.com", "example.org", "example.net", "mail.example", "post.example"]
ESP = "Postmark"


def _hash(salt: int, modulo: int, i: str = "s.i") -> str:
    """SQL for a reproducible pseudo-random integer in [0, modulo) from row number ``i``."""
    return f"((({i} + {salt}) * 2654435761) %% 4294967291 %% {modulo})"


def _pick(expression: str, values: list[str]) -> str:
    """SQL choosing ``values[expression]``."""
    whens = " ".join(f"WHEN {n} THEN '{v}'" for n, v in enumerate(values))
    return f"(CASE {expression} {whens} END)"


def _status_sql() -> str:
    roll = _hash(2, 1000)
    whens, upto = [], 0
    for status, share, _trail in MIX:
        upto += round(share * 1000)
        whens.append(f"WHEN {roll} < {upto} THEN '{status}'")
    return f"(CASE {' '.join(whens)} ELSE '{MIX[0][0]}' END)"


class Dialect:
    """The few SQL spellings that differ between SQLite, PostgreSQL and MariaDB."""

    def __init__(self, vendor: str) -> None:
        self.pg = vendor == "postgresql"
        self.mysql = vendor == "mysql"

    def insert_series(self, table: str, columns: list[str], values: list[str]) -> str:
        """INSERT one row per ``s.i`` in [%(lo)s, %(hi)s], ``values`` computed from it."""
        insert = f"INSERT INTO {table} ({', '.join(columns)}) SELECT {', '.join(values)}"
        if self.pg:
            return f"{insert} FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS s(i)"
        if self.mysql:
            # MariaDB's SEQUENCE engine: seq_1_to_N is a virtual table of 1..N that
            # answers a range of its one column without producing the rest.
            return (
                f"{insert} FROM (SELECT seq AS i FROM seq_1_to_4294967295 "
                "WHERE seq BETWEEN %(lo)s AND %(hi)s) AS s"
            )
        return (
            "WITH RECURSIVE s(i) AS (SELECT %(lo)s UNION ALL SELECT i + 1 FROM s WHERE i < %(hi)s) "
            f"{insert} FROM s"
        )

    def insert_with(self, cte: str, insert: str, select: str) -> str:
        """``INSERT ... SELECT`` with a common table expression: MariaDB wants the
        ``WITH`` after the ``INSERT INTO``, the others before it."""
        if self.mysql:
            return f"{insert} WITH {cte} {select}"
        return f"WITH {cte} {insert} {select}"

    def at(self, seconds_before_now: str) -> str:
        """A timestamp ``seconds_before_now`` seconds before %(now)s (epoch seconds)."""
        if self.pg:
            return f"to_timestamp(%(now)s - ({seconds_before_now}))"
        if self.mysql:
            # Django keeps MariaDB datetimes in UTC; FROM_UNIXTIME would use the
            # session's time zone.
            return f"TIMESTAMPADD(SECOND, %(now)s - ({seconds_before_now}), '1970-01-01')"
        # Django keeps SQLite datetimes as "YYYY-MM-DD HH:MM:SS" text in UTC.
        return f"datetime(%(now)s - ({seconds_before_now}), 'unixepoch')"

    def plus_seconds(self, column: str, seconds: str) -> str:
        if self.pg:
            return f"({column} + {seconds} * interval '1 second')"
        if self.mysql:
            return f"TIMESTAMPADD(SECOND, {seconds}, {column})"
        return f"datetime({column}, '+' || ({seconds}) || ' seconds')"

    def concat(self, *parts: str) -> str:
        """Text joined: ``||`` is a logical OR on MariaDB (without PIPES_AS_CONCAT)."""
        if self.mysql:
            return f"CONCAT({', '.join(parts)})"
        return " || ".join(parts)

    def json_object(self, *pairs: str) -> str:
        return f"{'jsonb_build_object' if self.pg else 'json_object'}({', '.join(pairs)})"

    def true(self) -> str:
        return "TRUE" if self.pg else "1"

    def trail_values(self) -> str:
        rows = [
            f"('{status}', {n}, '{kind}')"
            for status, _share, trail in MIX
            for n, kind in enumerate(trail)
        ]
        return "VALUES " + ", ".join(rows)


def _defaults(model: Any, given: dict[str, str], connection: Any) -> tuple[list[str], list[str]]:
    """Columns and SQL for every concrete field: ``given`` ones, else the field's default.

    Fields added to the models later (with a default or nullable) need no change here.
    """
    columns, values = [], []
    for field in model._meta.concrete_fields:
        if field.primary_key and field.name not in given:
            continue  # the database numbers them
        columns.append(connection.ops.quote_name(field.column))
        if field.name in given:
            values.append(given[field.name])
        elif field.has_default():
            value = field.get_db_prep_save(field.get_default(), connection)
            values.append(_literal(value, connection))
        elif field.null:
            values.append("NULL")
        else:
            values.append(_literal(field.get_db_prep_save("", connection), connection))
    return columns, values


def _literal(value: Any, connection: Any) -> str:
    """A constant as SQL (only the simple values model defaults produce)."""
    if value is None:
        return "NULL"
    if hasattr(value, "obj"):  # psycopg's Jsonb wrapper
        value = json.dumps(value.obj)
    if isinstance(value, bool):
        return ("TRUE" if value else "FALSE") if connection.vendor == "postgresql" else str(+value)
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, datetime):
        value = value.isoformat(" ")
    text = str(value).replace("'", "''")
    if connection.vendor == "mysql":  # a backslash escapes in MariaDB's string literals
        text = text.replace("\\", "\\\\")
    return f"'{text}'"


def statements(connection: Any, messages_total: int, days: int) -> list[str]:
    """The three INSERT ... SELECT statements of one chunk."""
    from wagtail_maillog.models import Event, Message, Recipient

    d = Dialect(connection.vendor)
    q = connection.ops.quote_name
    age = _hash(1, days * 86400)
    created = d.at(f"{age} + 60")
    sent_at = d.at(f"{age} + 30")
    source = _pick(_hash(4, len(SOURCES)), SOURCES)
    titles = _pick(_hash(4, len(SOURCES)), [s.replace("_", " ").title() for s in SOURCES])
    address = d.concat(
        "'user'", _hash(3, messages_total * 2), "'@'", _pick(_hash(5, len(DOMAINS)), DOMAINS)
    )

    m_cols, m_vals = _defaults(
        Message,
        {
            "id": "s.i",
            "created_at": created,
            "subject": d.concat(titles, "' #'", "s.i"),
            "from_email": "'site@example.com'",
            "source": source,
            "esp_name": f"'{ESP}'",
            "body_stored": d.true(),
            "body_text": "'Hello'",
        },
        connection,
    )
    status = _status_sql()
    r_cols, r_vals = _defaults(
        Recipient,
        {
            "id": "s.i",
            "message": "s.i",
            "created_at": created,
            "address": address,
            "status": status,
            "status_at": sent_at,
            "opened_at": f"CASE WHEN {status} IN ('opened', 'clicked') THEN {sent_at} END",
            "esp_message_id": d.concat("'gen-'", "s.i"),
        },
        connection,
    )
    e_fields = {
        "recipient": "r.id",
        "esp_name": f"'{ESP}'",
        "esp_message_id": "r.esp_message_id",
        "address": "r.address",
        "event_type": "t.kind",
        "timestamp": d.plus_seconds("r.status_at", "t.n"),
        "received_at": d.plus_seconds("r.status_at", "t.n"),
        "event_id": d.concat("r.esp_message_id", "'-'", "t.n"),
        "dedupe_key": d.concat("'gen:'", "r.esp_message_id", "':'", "t.n"),
        "raw": d.json_object("'RecordType'", "t.kind", "'MessageID'", "r.esp_message_id"),
    }
    e_cols, e_vals = _defaults(Event, e_fields, connection)
    return [
        d.insert_series(q(Message._meta.db_table), m_cols, m_vals),
        d.insert_series(q(Recipient._meta.db_table), r_cols, r_vals),
        d.insert_with(
            f"t(status, n, kind) AS ({d.trail_values()})",
            f"INSERT INTO {q(Event._meta.db_table)} ({', '.join(e_cols)})",
            # CROSS JOIN: SQLite walks the recipients by id, not the status index
            f"SELECT {', '.join(e_vals)} FROM {q(Recipient._meta.db_table)} r CROSS JOIN t "
            "WHERE t.status = r.status AND r.id BETWEEN %(lo)s AND %(hi)s",
        ),
    ]


def _secondary_indexes(cursor: Any, vendor: str, table: str) -> list[tuple[str, str]]:
    """(name, CREATE statement) of the table's plain indexes (not keys, not unique)."""
    if vendor == "postgresql":
        cursor.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s "
            "AND indexname NOT IN (SELECT conname FROM pg_constraint)",
            [table],
        )
    else:
        cursor.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = %s "
            "AND sql IS NOT NULL",
            [table],
        )
    return [(name, sql) for name, sql in cursor.fetchall() if "UNIQUE" not in sql.upper()]


@contextmanager
def foreign_keys_unchecked(cursor: Any, vendor: str) -> Iterator[None]:
    """PostgreSQL checks each row's foreign keys by trigger; these rows are consistent by
    construction, so skip that where allowed (superuser), as ``pg_restore`` does.
    On MariaDB, as ``mariadb-dump``'s output does: no foreign key or unique checks
    for this session (InnoDB may then buffer the unique index's changes)."""
    off = False
    if vendor == "postgresql":
        try:
            cursor.execute("SET session_replication_role = replica")
            off = True
        except Exception:  # not a superuser: the checks stay, the fill is slower
            pass
    elif vendor == "mysql":
        cursor.execute("SET SESSION foreign_key_checks = 0, unique_checks = 0")
    try:
        yield
    finally:
        if off:
            cursor.execute("SET session_replication_role = DEFAULT")
        elif vendor == "mysql":
            cursor.execute("SET SESSION foreign_key_checks = 1, unique_checks = 1")


def _mysql_plain_indexes(cursor: Any, table: str) -> list[tuple[str, str]]:
    """(name, definition as in SHOW CREATE TABLE) of the table's plain indexes, but for
    those that lead with a foreign key's column: InnoDB refuses to drop an index a
    foreign key needs."""
    cursor.execute(
        "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE "
        "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s "
        "AND REFERENCED_TABLE_NAME IS NOT NULL",
        [table],
    )
    foreign = {column for (column,) in cursor.fetchall()}
    cursor.execute(
        "SELECT INDEX_NAME, COLUMN_NAME FROM information_schema.STATISTICS "
        "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s AND NON_UNIQUE = 1 "
        "AND SEQ_IN_INDEX = 1 AND INDEX_TYPE = 'BTREE'",
        [table],
    )
    names = {name for name, column in cursor.fetchall() if column not in foreign}
    cursor.execute(f"SHOW CREATE TABLE `{table}`")
    definitions = []
    for line in cursor.fetchone()[1].splitlines():
        line = line.strip().rstrip(",")
        name = line.split("`")[1] if line.startswith("KEY `") else None
        if name in names:
            definitions.append((name, line))
    return definitions


@contextmanager
def mysql_indexes_rebuilt(cursor: Any, tables: list[str]) -> Iterator[None]:
    """:func:`indexes_rebuilt` on MariaDB: one ``ALTER TABLE`` per table to drop, one to
    build them all again (InnoDB sorts each index once instead of a million inserts)."""
    dropped = {table: _mysql_plain_indexes(cursor, table) for table in tables}
    for table, indexes in dropped.items():
        if indexes:
            drops = ", ".join(f"DROP INDEX `{name}`" for name, _definition in indexes)
            cursor.execute(f"ALTER TABLE `{table}` {drops}")
    try:
        yield
    finally:
        for table, indexes in dropped.items():
            if indexes:
                adds = ", ".join(f"ADD {definition}" for _name, definition in indexes)
                cursor.execute(f"ALTER TABLE `{table}` {adds}")


@contextmanager
def indexes_rebuilt(cursor: Any, vendor: str, tables: list[str]) -> Iterator[None]:
    """Drop plain indexes, fill, build them again: sorting once beats a million random inserts."""
    if vendor == "mysql":
        with mysql_indexes_rebuilt(cursor, tables):
            yield
        return
    dropped = [ix for table in tables for ix in _secondary_indexes(cursor, vendor, table)]
    for name, _sql in dropped:
        cursor.execute(f'DROP INDEX "{name}"')
    try:
        yield
    finally:
        for _name, sql in dropped:
            cursor.execute(sql)


def generate(
    messages: int, chunk: int = 100_000, days: int = 60, now: datetime | None = None
) -> dict[str, Any]:
    """Add ``messages`` messages (one recipient each) with their events; ANALYZE after."""
    from django.core.management.color import no_style
    from django.db import connection, transaction
    from django.utils import timezone

    from wagtail_maillog.models import Event, Message, Recipient

    now = now or timezone.now()
    start = time.perf_counter()
    last = [
        m.objects.order_by("-pk").values_list("pk", flat=True).first() for m in (Message, Recipient)
    ]
    first = max(pk or 0 for pk in last) + 1  # recipients share their message's id
    sqls = statements(connection, messages, days)
    tables = [m._meta.db_table for m in (Message, Recipient, Event)]
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("PRAGMA cache_size = -262144")  # 256 MB for the index builds
        with (
            foreign_keys_unchecked(cursor, connection.vendor),
            indexes_rebuilt(cursor, connection.vendor, tables),
        ):
            for lo in range(first, first + messages, chunk):
                hi = min(lo + chunk, first + messages) - 1
                params = {"lo": lo, "hi": hi, "now": int(now.timestamp())}
                with transaction.atomic():
                    for sql in sqls:
                        cursor.execute(sql, params)
        for sql in connection.ops.sequence_reset_sql(no_style(), [Message, Recipient, Event]):
            cursor.execute(sql)
        filled = time.perf_counter() - start
        analyze(cursor)
    return {
        "messages": messages,
        "events": Event.objects.filter(esp_name=ESP).count(),
        "seconds": round(filled, 2),
        "analyze_seconds": round(time.perf_counter() - start - filled, 2),
    }


def expire(days: int) -> None:
    """Move every generated row ``days`` further into the past (for the purge)."""
    from django.db.models import F

    from wagtail_maillog.models import Event, Message, Recipient

    shift = timedelta(days=days)
    Message.objects.update(created_at=F("created_at") - shift)
    Recipient.objects.update(created_at=F("created_at") - shift)
    Event.objects.update(received_at=F("received_at") - shift)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=100_000)
    args = parser.parse_args()
    import django

    django.setup()
    print(generate(args.messages, chunk=args.chunk))


if __name__ == "__main__":
    main()
