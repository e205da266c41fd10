"""The outbox worker's queries read the rows of a batch, not the backlog, whatever
the planner knows.

Each test fills the outbox and the log with never-analysed tables, as a
database without autovacuum (or right after a burst) has them, and asks the
database for the plan of the statements the worker ran. Before, PostgreSQL
read the lock query through ``maillog_outbox_connector`` (every queued row of
the connector, for each batch; that index is gone since migration 0018) and the
"sending" UPDATE through ``maillog_rcpt_espid`` (every recipient not handed over
yet).
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.mail import EmailMessage
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tests.esp import ScriptedBackend
from tests.utils import assert_migration_creates, plan
from wagtail_maillog.models import ConnectorState, Message, OutboxItem
from wagtail_maillog.models import SendState as S
from wagtail_maillog.outbox import worker

pytestmark = pytest.mark.django_db

BACKLOG = 400


@pytest.fixture(autouse=True)
def connectors(settings):
    settings.EMAIL_BACKEND = "wagtail_maillog.outbox.backend.OutboxBackend"
    settings.WAGTAIL_MAILLOG = {
        "CONNECTORS": {
            "default": {"BACKEND": "tests.esp.ScriptedBackend"},
            "other": {"BACKEND": "tests.esp.ScriptedBackend"},
        },
        "OUTBOX_BATCH": 20,
    }
    ScriptedBackend.script = []
    ScriptedBackend.calls = []


def statements(queries: CaptureQueriesContext, *parts: str) -> list[str]:
    """The statements run that contain every one of ``parts`` (case-insensitive)."""
    return [q["sql"] for q in queries.captured_queries if all(p in q["sql"].upper() for p in parts)]


def test_the_claims_lock_finds_its_rows_by_key():
    due = timezone.now() - timedelta(seconds=1)
    messages = Message.objects.bulk_create(Message(subject=f"W {i}") for i in range(BACKLOG))
    OutboxItem.objects.bulk_create(
        OutboxItem(message=m, connector="default", state=S.QUEUED, next_attempt_at=due)
        for m in messages
    )
    with CaptureQueriesContext(connection) as queries:
        assert len(worker.claim(20, "a")) == 20
    by_key = statements(queries, "CASE WHEN")  # the lock (the UPDATE's re-check on SQLite)
    assert by_key
    for sql in by_key:
        shown = plan(sql)
        assert "maillog_outbox_due" not in shown, shown


def test_marking_a_batch_sending_reads_its_recipients_not_the_backlog():
    for i in range(BACKLOG):
        EmailMessage(f"Mail {i}", "Body", "s@example.com", [f"r{i}@example.com"]).send()
    batch = worker.claim(20, "a")
    with CaptureQueriesContext(connection) as queries:
        worker.Batch(batch, "a", worker.RunResult())._prepare(batch)
    (marking,) = statements(queries, "UPDATE", "WAGTAIL_MAILLOG_RECIPIENT", "SENDING")
    shown = plan(marking)
    assert "maillog_rcpt_espid" not in shown, shown


def test_a_claim_parks_due_mail_of_a_connector_switched_off_and_takes_the_rest():
    """The candidates are read without the connector: mail of a connector switched
    off since the run began (here: due before the rest) must not fill them, or the
    claim would find nothing to take while mail of the other connector waits."""
    due = timezone.now() - timedelta(minutes=5)
    ConnectorState.objects.create(name="other", enabled=False)  # no parking yet
    first = Message.objects.bulk_create(Message(subject=f"Off {i}") for i in range(BACKLOG))
    OutboxItem.objects.bulk_create(
        OutboxItem(message=m, connector="other", state=S.QUEUED, next_attempt_at=due) for m in first
    )
    later = Message.objects.bulk_create(Message(subject=f"On {i}") for i in range(3))
    OutboxItem.objects.bulk_create(
        OutboxItem(message=m, connector="default", state=S.QUEUED, next_attempt_at=due)
        for m in later
    )
    claimed = worker.claim(5, "a")
    assert sorted(i.message.subject for i in claimed) == ["On 0", "On 1", "On 2"]
    parked = OutboxItem.objects.filter(connector="other")
    assert set(parked.values_list("state", flat=True)) == {S.CONNECTOR_DISABLED}


def test_an_abandoned_claim_is_taken_over_while_every_connector_is_off():
    """A row whose lease ran out is due whatever its connector; with no connector on,
    the CASE's other branch is an empty IN, which must not make it match nothing."""
    message = Message.objects.create(subject="Abandoned")
    past = timezone.now() - timedelta(minutes=10)
    item = OutboxItem.objects.create(
        message=message,
        connector="default",
        state=S.SENDING,
        lease_owner="dead",
        lease_until=past,
        next_attempt_at=past,
        attempts=1,
    )
    ConnectorState.objects.create(name="default", enabled=False)
    ConnectorState.objects.create(name="other", enabled=False)
    assert [i.pk for i in worker.claim(5, "b")] == [item.pk]


def _connector_index_gone() -> bool:
    with connection.cursor() as cursor:
        found = connection.introspection.get_constraints(cursor, OutboxItem._meta.db_table)
    return "maillog_outbox_connector" not in found


@pytest.mark.django_db(transaction=True)
def test_migration_0018_drops_the_connector_index_and_gives_it_back():
    assert_migration_creates(_connector_index_gone, "0017")
