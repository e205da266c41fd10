"""PostgreSQL's one-event write as a function (migration 0016), whose plan the database
session keeps: called on connections that outlive a request, and in step with the
models (its body is the migration's snapshot of the tables)."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest
from django.db import connection

from tests.utils import assert_migration_creates, send_with_ids, tracking_event
from wagtail_maillog import events, plans
from wagtail_maillog.models import Address, Event, Recipient

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
    assert events._function_call_sql(connection.alias).count("%s") == len(inputs)


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
