"""PostgreSQL's one-event write as a function (migration 0016), whose plan the database
session keeps: called on connections that outlive a request, and in step with the
models (its body is the migration's snapshot of the tables)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from django.db import connection
from django.db.models import Q

from tests.utils import assert_migration_creates, send_with_ids, tracking_event
from wagtail_maillog import events, plans
from wagtail_maillog.models import Address, Event, Message, Recipient

pytestmark = [
    pytest.mark.skipif(connection.vendor != "postgresql", reason="a PostgreSQL function"),
    pytest.mark.django_db,
]


def _function() -> tuple[list[str], list[str], str] | None:
    """The function's argument names, their modes and its body; None if there is none."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT proargnames, proargmodes, prosrc FROM pg_proc WHERE proname = %s",
            [events.STORE_ONE_EVENT],
        )
        found = cursor.fetchall()
    assert len(found) <= 1, found
    return found[0] if found else None


def test_its_arguments_are_the_values_the_code_passes():
    """Its IN arguments are, in order: the recipients as read and their new values (one
    array per column the one-event write moves), the event's columns, the addresses;
    and the call has a placeholder for each."""
    names, modes, _body = _function()
    inputs = [n for n, m in zip(names, modes, strict=True) if m == "i"]
    event_columns = [f.column for f in events._event_fields()]
    assert inputs == [
        *(f"read_{c}" for c in events._MOVED),
        *(f"event_{c}" for c in event_columns),
        *(f"new_{c}" for c in events._MOVED),
        "touched",
        "touched_at",
    ]
    assert events._function_call_sql(connection.alias, 2, 2, 2).count("%s") == len(inputs)


def test_it_inserts_every_column_of_an_event():
    """A field added to Event needs a migration that replaces the function: this fails
    until one does."""
    _names, _modes, body = _function()
    insert = re.search(r"INSERT INTO wagtail_maillog_event \(([^)]*)\)", body)
    named = {c.strip().strip('"') for c in insert.group(1).split(",")}
    columns = {f.column for f in Event._meta.concrete_fields if not f.primary_key}
    assert named == columns


@pytest.mark.parametrize("max_age, kept", [(0, False), (60, True), (None, True)])
def test_it_is_called_on_connections_that_outlive_the_request(monkeypatch, max_age, kept):
    send_with_ids(["ann@example.com"], "esp-1")
    Address.objects.create(address="ann@example.com")
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", max_age)  # read at each write
    sent: list[str] = []

    def seen(execute, sql, params, many, context):
        sent.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(seen):
        result = events.ingest([(tracking_event(), "Test")])
    assert (result.stored, len(result.changes)) == (1, 1)
    called = any(events.STORE_ONE_EVENT in sql for sql in sent)
    assert called == kept, sent
    assert Recipient.objects.get().status == "delivered"
    assert Event.objects.get().recipient == Recipient.objects.get()
    assert Address.objects.get().last_event_at is not None


@pytest.mark.django_db(transaction=True)
def test_the_migration_creates_and_drops_it():
    assert_migration_creates(_function, "0015")


def test_django_s_pool_keeps_its_connections():
    pooled = SimpleNamespace(settings_dict={"CONN_MAX_AGE": 0, "OPTIONS": {"pool": True}})
    assert plans.keeps_plans(pooled)
    assert not plans.keeps_plans(SimpleNamespace(settings_dict={"CONN_MAX_AGE": 0}))


def _outcome() -> tuple[Any, ...]:
    """What an event left: the recipients, its events and the addresses' last event."""
    recipients = [
        (*row[:3], row[3] if row[3] == AT else "when sent", *row[4:])
        for row in Recipient.objects.order_by("address", "role").values_list(
            "address", "role", "status", "status_at", "opened_at", "reason"
        )
    ]
    stored = Event.objects.order_by("pk").values_list(
        "recipient__address", "event_type", "esp_message_id", "dedupe_key"
    )
    addresses = Address.objects.order_by("address").values_list(
        "address", Q(last_event_at__isnull=False)
    )
    return recipients, list(stored), list(addresses)


def _send(scenario: str) -> None:
    Address.objects.create(address="ann@example.com")
    if scenario == "two recipients, one ESP id":
        send_with_ids(["ann@example.com", "bob@example.com"], "esp-1")
    elif scenario == "one address twice":
        send_with_ids(["ann@example.com"], "esp-1", cc=["ann@example.com"])
    else:
        send_with_ids(["ann@example.com"], "esp-1")


AT = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)


def _event(**fields: Any) -> Any:
    return tracking_event(timestamp=AT, **fields)


#: (scenario, the events it ingests one at a time, what the call's arrays hold:
#: recipients read, moved, addresses touched; 2 is more than one)
SCENARIOS = [
    ("one recipient", [_event()], (1, 1, 1)),
    ("two recipients, one ESP id", [_event()], (2, 1, 1)),
    ("one address twice", [_event()], (2, 2, 1)),
    (
        "nothing moves",
        [_event(), _event(event_id="ev-2")],
        (1, 0, 0),
    ),
    ("no ESP id", [_event(message_id=None, recipient="")], (0, 0, 0)),
]


@pytest.mark.parametrize("scenario, given, sizes", SCENARIOS, ids=[s[0] for s in SCENARIOS])
def test_every_size_of_its_arrays_writes_what_the_statement_writes(
    monkeypatch, scenario, given, sizes
):
    """Arrays of none or one value are written in the call (``ARRAY[...]``), more as
    one parameter: the function gets the same values either way, and leaves what
    the statement leaves."""
    outcomes = []
    for max_age in (0, 60):  # the statement, then the function
        Event.objects.all().delete()
        Message.objects.all().delete()
        Address.objects.all().delete()
        _send(scenario)
        monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", max_age)
        calls: list[str] = []

        def seen(execute, sql, params, many, context, calls=calls):
            if events.STORE_ONE_EVENT in sql:
                calls.append(sql)
            return execute(sql, params, many, context)

        with connection.execute_wrapper(seen):
            for event in given:
                events.ingest([(event, "Test")])
        assert len(calls) == (len(given) if max_age else 0), calls
        if calls:
            assert calls[-1] == events._function_call_sql(connection.alias, *sizes)
        outcomes.append(_outcome())
    statement, function = outcomes
    assert function == statement
    recipients, stored, _addresses = function
    assert len(stored) == len(given)
    if scenario != "no ESP id":
        assert ("ann@example.com", "to", "delivered", AT) in [r[:4] for r in recipients]


def test_a_call_writes_arrays_of_none_or_one_value_in_its_sql():
    one = events._function_call_sql(connection.alias, 1, 1, 0)
    many = events._function_call_sql(connection.alias, 2, 2, 2)
    assert "ARRAY[%s::bigint]" in one and "ARRAY[]::varchar[]" in one
    assert "ARRAY[" not in many
    assert one.count("%s") == many.count("%s") - 1  # the empty array takes none
