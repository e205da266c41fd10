"""The ESP-id indexes are partial (issue 20). The recipients' holds only recipients
the ESP took (migration 0019): a queued recipient writes no entry into it. Every
lookup by ESP id (one event, a batch of events, on each database's write path)
still finds its rows through it, which SQLite does only when the query carries the
index's condition (PostgreSQL proves it from the id's value as well). The events'
holds only orphans (migration 0020): a matched event writes no entry; an orphan's
adoption finds them through it. MariaDB/MySQL have no partial indexes: theirs stay
whole."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection

from tests.utils import (
    assert_migration_creates,
    index_definition,
    send_with_ids,
    tracking_event,
    usable_plan,
)
from wagtail_maillog import events
from wagtail_maillog.models import Event, Message, Recipient

INDEX = "maillog_rcpt_espid"
ORPHANS = "maillog_event_espid"
partial_indexes = pytest.mark.skipif(
    not connection.features.supports_partial_indexes, reason="MariaDB/MySQL: a whole index"
)


def _definition(name: str = INDEX, model: Any = Recipient) -> str:
    return index_definition(name, model._meta.db_table)


def _lookups(run: Callable[[], Any], table: str = Recipient._meta.db_table) -> list[Any]:
    """The statements ``run`` sent that find rows of ``table`` by ESP id, with their
    parameters."""
    seen: list[tuple[str, Any]] = []

    def record(execute, sql, params, many, context):
        by_id = any(f"esp_message_id{f}" in sql for f in (" = %s", '" IN (', '" = ANY('))
        if table in sql and by_id and not many:
            seen.append((sql, params))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        run()
    return seen


@pytest.fixture
def mail() -> Message:
    """Recipients the ESP took, beside many it has not taken yet (no ESP id)."""
    queued = Message.objects.create(subject="Queued")
    Recipient.objects.bulk_create(
        Recipient(message=queued, address=f"q{i}@example.com", status="pending") for i in range(50)
    )
    send_with_ids(["bob@example.com"], "esp-2")
    return send_with_ids(["ann@example.com", "cy@example.com"], "esp-1")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "name, model, column",
    [(INDEX, Recipient, "esp_message_id"), (ORPHANS, Event, "recipient_id")],
)
def test_partial_where_the_database_has_partial_indexes(mail, name, model, column):
    definition = _definition(name, model)
    if connection.features.supports_partial_indexes:
        assert "WHERE" in definition.upper(), definition
        assert column in definition.split("WHERE")[-1], definition
    else:
        assert definition


@partial_indexes
@pytest.mark.django_db
@pytest.mark.parametrize(
    "given, delivered",
    [
        ([dict(recipient="ann@example.com")], "ann"),  # by ESP id and address
        ([dict(message_id="esp-2", recipient="")], "bob"),  # the message's only recipient
        (
            [
                dict(recipient="ann@example.com"),
                dict(message_id="esp-2", event_id="ev-2", recipient="bob@example.com"),
            ],
            "ann",
        ),
    ],
    ids=["one event", "one event without address", "a batch"],
)
@pytest.mark.parametrize("max_age", [0, 60], ids=["new connections", "kept connections"])
def test_every_lookup_by_esp_id_reads_the_index(mail, monkeypatch, given, delivered, max_age):
    """On SQLite the INSERT's subqueries and RETURNING find them, on PostgreSQL the
    locked read (the statement and the function's), in a batch the ORM's query."""
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", max_age)
    found = _lookups(lambda: events.ingest([(tracking_event(**e), "Test") for e in given]))
    assert found
    for sql, params in found:
        shown = usable_plan(sql, params)
        assert INDEX in shown, (sql, shown)
    assert Recipient.objects.get(address=f"{delivered}@example.com").status == "delivered"


@partial_indexes
@pytest.mark.django_db
def test_an_orphan_s_adoption_reads_the_orphans_index():
    events.ingest([(tracking_event(message_id="esp-9", recipient="dan@example.com"), "Test")])
    assert Event.objects.get(esp_message_id="esp-9").recipient is None  # an orphan
    found = _lookups(
        lambda: send_with_ids(["dan@example.com"], "esp-9"), table=Event._meta.db_table
    )
    assert found
    table = f'"{Event._meta.db_table}"'
    for sql, params in found:
        if connection.vendor == "sqlite":
            # Without statistics SQLite may as well walk the recipient key's NULLs (the
            # orphans): asked to use the index, it refuses one that cannot serve.
            sql = sql.replace(f"FROM {table}", f"FROM {table} INDEXED BY {ORPHANS}", 1)
        shown = usable_plan(sql, params)
        assert ORPHANS in shown, (sql, shown)
    assert Event.objects.get(esp_message_id="esp-9").recipient.address == "dan@example.com"


@partial_indexes
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "name, model, before", [(INDEX, Recipient, "0018"), (ORPHANS, Event, "0019")]
)
def test_the_migration_makes_it_partial_and_back_whole(name, model, before):
    def whole_and_an_interrupted_build():
        whole = _definition(name, model)
        assert whole and "WHERE" not in whole.upper(), whole
        if connection.vendor == "postgresql":  # a build that was interrupted before
            with connection.cursor() as cursor:
                cursor.execute(f"CREATE INDEX {name}_new ON {model._meta.db_table} (id)")

    assert_migration_creates(
        lambda: "WHERE" in _definition(name, model).upper(),
        before,
        meanwhile=whole_and_an_interrupted_build,
    )
    with connection.cursor() as cursor:
        names = connection.introspection.get_constraints(cursor, model._meta.db_table)
    assert f"{name}_new" not in names
