"""The set-based writes and lookups of wagtail_maillog/bulk.py.

On PostgreSQL the column arrays of ``insert_rows``/``update_fields`` go through a
cursor binding them server-side (psycopg dumps them in binary); these tests hold
it to what Django's own cursor gives: the same transaction, logged and counted
queries, execute wrappers, Django's exceptions.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest
from django.db import DataError, OperationalError, connection, transaction
from django.test.utils import CaptureQueriesContext

from tests.utils import Statements, tracking_event
from wagtail_maillog import bulk
from wagtail_maillog.events import event_row, insert_events
from wagtail_maillog.models import Event, Message, Recipient
from wagtail_maillog.status import Status

pytestmark = pytest.mark.django_db

on_postgres = pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL only")

AT = datetime(2026, 3, 29, 1, 30, tzinfo=UTC)


def _recipients(count: int) -> list[Recipient]:
    message = Message.objects.create(subject="x")
    bulk.insert_rows(
        Recipient,
        ["message", "address", "esp_message_id"],
        [(message.pk, f"r{i}@example.com", f"esp-{i}") for i in range(count)],
    )
    return list(message.recipients.order_by("pk"))


# ---- converting whole columns -------------------------------------------------------------

COLUMNS = [
    ["a", "b"],
    ["a", None],
    [None, None],
    [Status.DELIVERED, "x"],  # a str subclass
    [1, 2],
    [1, None],
    [True, 1],  # bool is no int for the shortcut
    [True, False],
    [AT, None],
    [{"a": 1}, ["x"]],
]


@pytest.mark.parametrize("model", [Event, Recipient, Message])
def test_a_column_is_converted_as_each_of_its_values(model):
    for field in model._meta.concrete_fields:
        convert = bulk.converter(field, connection)
        convert_column = bulk.column_converter(field, connection)
        for column in COLUMNS:
            try:
                expected = [convert(v) for v in column]
            except Exception as refused:
                with pytest.raises(type(refused)):
                    convert_column(list(column))
                continue
            got = convert_column(list(column))
            assert [type(v) for v in got] == [type(v) for v in expected], (field.name, column)
            assert [getattr(v, "obj", v) for v in got] == [getattr(v, "obj", v) for v in expected]


def test_json_text_is_stored_as_the_json_it_holds():
    row = event_row(_tracking(), "SparkPost")
    row.raw, row.raw_json = None, '{"a": [1, "\\u00fc"]}'  # only the text is written
    insert_events([row])
    assert Event.objects.get().raw == {"a": [1, "ü"]}


def test_a_payload_over_the_limit_is_stored_cut_down(settings):
    settings.WAGTAIL_MAILLOG = {"MAX_RAW_PAYLOAD": 50}
    payload = {"text": "x" * 200}
    insert_events([event_row(_tracking(esp_event=payload), "SparkPost")])
    stored = Event.objects.get().raw
    assert stored == {"truncated": True, "text": json.dumps(payload)[:50]}


def test_rows_of_the_wrong_width_are_refused():
    message = Message.objects.create(subject="x")
    with pytest.raises(ValueError):
        bulk.insert_rows(Recipient, ["message", "address"], [(message.pk,)])
    assert not Recipient.objects.exists()


# ---- lookups of many values ---------------------------------------------------------------


def test_filter_in_finds_what_field_in_finds_in_as_few_queries_as_allowed():
    recipients = _recipients(2_000)
    wanted = [f"esp-{i}" for i in range(2_000)] + ["esp-none"]
    with CaptureQueriesContext(connection) as queries:
        found = [
            r.pk
            for part in bulk.filter_in(Recipient.objects.all(), "esp_message_id", wanted)
            for r in part
        ]
    assert sorted(found) == [r.pk for r in recipients]
    expected_queries = 1 if connection.vendor == "postgresql" else 3  # 900 values a query
    assert len(queries) == expected_queries


def test_filter_in_of_nothing_asks_nothing():
    with CaptureQueriesContext(connection) as queries:
        assert list(bulk.filter_in(Recipient.objects.all(), "esp_message_id", [])) == []
    assert len(queries) == 0


def test_filter_in_keeps_the_querysets_own_conditions():
    recipients = _recipients(3)
    Recipient.objects.filter(pk=recipients[0].pk).update(status=Status.BOUNCED)
    bounced = Recipient.objects.filter(status=Status.BOUNCED)
    parts = bulk.filter_in(bounced, "esp_message_id", ["esp-0", "esp-1"])
    assert [r.pk for part in parts for r in part] == [recipients[0].pk]


# ---- PostgreSQL: arrays bound server-side ---------------------------------------------------


@on_postgres
def test_arrays_are_sent_as_parameters_not_quoted_into_the_sql():
    message = Message.objects.create(subject="x")
    with CaptureQueriesContext(connection) as queries:
        bulk.insert_rows(Recipient, ["message", "address"], [(message.pk, "secret@example.com")])
    (query,) = queries.captured_queries  # one statement, logged as Django logs its own
    assert "UNNEST" in query["sql"] and "$1" in query["sql"]
    assert "secret@example.com" not in query["sql"]
    assert message.recipients.get().address == "secret@example.com"


@on_postgres
def test_the_arrays_are_written_in_the_callers_transaction():
    recipients = _recipients(2)

    class Undo(Exception):
        pass

    with pytest.raises(Undo), transaction.atomic():
        for r in recipients:
            r.status, r.status_at = Status.DELIVERED, AT
        bulk.update_fields(recipients, ["status", "status_at"])
        bulk.insert_rows(Recipient, ["message", "address"], [(recipients[0].message_id, "c@x")])
        assert Recipient.objects.filter(status=Status.DELIVERED).count() == 2  # seen inside
        raise Undo
    assert not Recipient.objects.filter(status=Status.DELIVERED).exists()  # rolled back
    assert Recipient.objects.count() == 2


@on_postgres
def test_execute_wrappers_run_and_errors_are_djangos():
    recipients = _recipients(1)

    def refuse(execute, sql, params, many, context):
        raise OperationalError("the database went away")

    with connection.execute_wrapper(refuse), pytest.raises(OperationalError):
        bulk.update_fields(recipients, ["status"])
    with pytest.raises(DataError), transaction.atomic():  # NUL: PostgreSQL refuses it
        bulk.insert_rows(Recipient, ["message", "address"], [(recipients[0].message_id, "a\0b")])
    assert Recipient.objects.count() == 1


@on_postgres
def test_columns_of_nulls_and_of_keys_beside_nulls_bind():
    recipients = _recipients(3)
    Recipient.objects.update(opened_at=AT)
    bulk.update_fields(recipients, ["opened_at", "reason"])  # opened_at: only NULLs
    assert not Recipient.objects.filter(opened_at__isnull=False).exists()
    events = [
        event_row(_tracking(event_id=f"e{i}", message_id=f"esp-{i}"), "SparkPost") for i in range(3)
    ]
    events[0].recipient = recipients[0]  # one key, two orphans
    insert_events(events)
    assert Event.objects.filter(recipient__isnull=True).count() == 2
    assert Event.objects.get(recipient__isnull=False).recipient_id == recipients[0].pk


@on_postgres
def test_it_works_when_the_site_binds_server_side_itself():
    other = connection.copy()  # the same database, another connection
    other.settings_dict["OPTIONS"] = {**other.settings_dict["OPTIONS"], "server_side_binding": True}
    try:
        with bulk.array_cursor(other) as (cursor, placeholder):
            cursor.execute(
                f"SELECT sum(n), count(s) FROM UNNEST(({placeholder})::bigint[], "
                f"({placeholder})::varchar[]) AS v(n, s)",
                [[1, 2**40, None], ["a", "", None]],
            )
            assert cursor.fetchone() == (2**40 + 1, 2)
    finally:
        other.close()


def _tracking(**kwargs):
    return tracking_event(**{"timestamp": AT, **kwargs})


# ---- MariaDB: statements the server received ------------------------------------------------

on_mariadb = pytest.mark.skipif(connection.vendor != "mysql", reason="MariaDB/MySQL only")


@on_mariadb
@pytest.mark.parametrize("count", [2_000])
def test_mariadb_updates_many_rows_in_few_statements(count):
    recipients = _recipients(count)
    for n, r in enumerate(recipients):
        r.status, r.reason = Status.DELIVERED, f"r{n}"
    with Statements() as sent:
        bulk.update_fields(recipients, ["status", "reason"])
    assert sent.count <= -(-count // bulk.CHUNK)  # one per CHUNK rows, never one per row
    assert sorted(Recipient.objects.values_list("reason", flat=True)) == sorted(
        f"r{n}" for n in range(count)
    )
    assert set(Recipient.objects.values_list("status", flat=True)) == {Status.DELIVERED}


@on_mariadb
def test_mariadb_inserts_many_rows_in_few_statements():
    message = Message.objects.create(subject="x")
    with Statements() as sent:
        bulk.insert_rows(
            Recipient,
            ["message", "address", "esp_message_id"],
            [(message.pk, f"r{i}@example.com", f"esp-{i}") for i in range(2_000)],
        )
    assert Recipient.objects.count() == 2_000
    assert sent.count == 1, sent.count  # INSERTs of up to 1 MB (bulk.MYSQL_STATEMENT_BYTES)


# ---- one row, and one row with the rows that point at it (queueing one mail) -------------


def test_insert_row_writes_what_create_writes():
    """The values given, the defaults of the others, converted as a save would."""
    [pk] = bulk.insert_row(Message, {"subject": "Hi", "created_at": AT, "tags": ["a"]})
    by_insert = Message.objects.get(pk=pk)
    by_create = Message.objects.create(subject="Hi", created_at=AT, tags=["a"])
    fields = [f.attname for f in Message._meta.concrete_fields if not f.primary_key]
    assert [getattr(by_insert, f) for f in fields] == [getattr(by_create, f) for f in fields]
    assert by_insert.reply_to == [] and by_insert.importance == "normal"


def test_insert_row_returns_the_columns_the_database_decided():
    from django.db.models import CharField
    from django.db.models.expressions import RawSQL

    from wagtail_maillog.models import OutboxItem

    message = Message.objects.create(subject="x")
    state = RawSQL("SELECT %s", ("queued",), output_field=CharField())
    if not connection.features.can_return_columns_from_insert:
        with pytest.raises(Exception, match="returns no columns"):
            bulk.insert_row(OutboxItem, {"message": message.pk, "state": state}, ("pk", "state"))
        return
    pk, returned = bulk.insert_row(
        OutboxItem, {"message": message.pk, "state": state}, returning=("pk", "state")
    )
    assert returned == "queued" == OutboxItem.objects.get(pk=pk).state


def _linked(count: int) -> int:
    from wagtail_maillog.models import OutboxItem

    return bulk.insert_linked(
        Message,
        {"subject": "Linked", "created_at": AT},
        bulk.Linked(Recipient, "message", [{"address": f"r{i}@example.com"} for i in range(count)]),
        bulk.Linked(OutboxItem, "message", [{"connector": "default", "next_attempt_at": AT}]),
    )


@pytest.mark.parametrize("count", [1, 3, 400])
def test_insert_linked_writes_the_row_and_the_rows_that_point_at_it(count):
    from wagtail_maillog.models import OutboxItem

    with CaptureQueriesContext(connection) as queries:
        pk = _linked(count)
    message = Message.objects.get(pk=pk)
    assert message.subject == "Linked"
    assert sorted(message.recipients.values_list("address", flat=True)) == sorted(
        f"r{i}@example.com" for i in range(count)
    )
    assert OutboxItem.objects.get(message=message).connector == "default"
    # executemany is logged as "N times: INSERT ..."
    statements = [re.sub(r"^\d+ times: ", "", q["sql"]) for q in queries.captured_queries]
    writes = [sql for sql in statements if sql.startswith(("INSERT", "WITH"))]
    one_statement = connection.vendor == "postgresql" and count == 1
    assert len(writes) == (1 if one_statement else 3), writes


@pytest.mark.django_db(transaction=True)
def test_insert_linked_outside_a_transaction_is_all_or_nothing():
    """A linked row the database refuses leaves no row behind (PostgreSQL: one
    statement; elsewhere the INSERTs' own transaction)."""
    from django.db import IntegrityError

    from wagtail_maillog.models import OutboxItem

    with pytest.raises(IntegrityError):
        bulk.insert_linked(
            Message,
            {"subject": "Refused"},
            bulk.Linked(Recipient, "message", [{"address": "a@example.com"}]),
            bulk.Linked(OutboxItem, "message", [{"connector": None}]),  # NOT NULL
        )
    assert not Message.objects.filter(subject="Refused").exists()
    assert not Recipient.objects.filter(address="a@example.com").exists()
