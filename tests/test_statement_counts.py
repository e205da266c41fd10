"""The set-based paths cost the same number of statements for 10 rows as for
hundreds, on every database: queuing a mailing, purging old mail, claiming
outbox mail, storing a webhook batch (tests/test_webhooks.py).

Statements are counted by the server on MariaDB (``tests.utils.Statements``):
Django counts an ``executemany`` as one query while mysqlclient may send one
statement per row, so only the server's count can tell.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tests.testapp.models import Member
from tests.utils import Statements
from wagtail_maillog.addresses.health import set_status
from wagtail_maillog.models import (
    AddressStatus,
    Event,
    Mailing,
    Message,
    OutboxItem,
    Recipient,
    SendAttempt,
)
from wagtail_maillog.models import SendState as S
from wagtail_maillog.outbox import worker
from wagtail_maillog.purge import purge

pytestmark = pytest.mark.django_db

SMALL, LARGE = 10, 400


# ---- the mailing queue -------------------------------------------------------------------------


def _members(start: int, count: int) -> None:
    """``count`` more confirmed members (bulk: no per-row signal)."""
    made = Member.objects.bulk_create(
        Member(name=f"Member {i}", email=f"m{i}@example.com") for i in range(start, start + count)
    )
    set_status([(m.email, AddressStatus.CONFIRMED, "test") for m in made])


def _queue_statements(settings, capture, **plan: object) -> int:
    """Statements of one queuing task run, for every member there is now."""
    from django.core.cache import cache

    from wagtail_maillog.mailings import sending

    settings.WAGTAIL_MAILLOG = {
        "CONNECTORS": {
            "news": {
                "BACKEND": "anymail.backends.test.EmailBackend",
                **({"MAILING": plan} if plan else {}),
            }
        },
        "DEFAULT_CONNECTOR": "news",
    }
    cache.set(worker.WAKE_KEY, 1, timeout=300)  # no worker takes the mail meanwhile
    mailing = Mailing.objects.create(
        subject="News for {{ name }}", body="<p>Hi {{ name }}</p>", audience="members"
    )
    with capture(execute=False):
        sending.send(mailing)
    with Statements() as sent:
        assert sending.queue_mailing(mailing.pk).endswith("queued")
    return sent.count


@pytest.mark.parametrize(
    "plan",
    [pytest.param({}, id="one message per member"), pytest.param({"BATCH_SIZE": 500}, id="batch")],
)
def test_queuing_a_mailing_costs_the_same_statements_for_more_members(
    settings, django_capture_on_commit_callbacks, plan
):
    _members(0, SMALL)
    _queue_statements(settings, django_capture_on_commit_callbacks, **plan)  # caches warm
    small = _queue_statements(settings, django_capture_on_commit_callbacks, **plan)
    _members(SMALL, LARGE - SMALL)
    large = _queue_statements(settings, django_capture_on_commit_callbacks, **plan)
    mailings = Mailing.objects.order_by("pk")
    assert [m.queued_count for m in mailings] == [SMALL, SMALL, LARGE]
    assert large == small, (small, large)


# ---- purge ---------------------------------------------------------------------------------


def _old_mail(count: int, days: int) -> None:
    """``count`` delivered messages with an event each, ``days`` old."""
    at = timezone.now() - timedelta(days=days)
    messages = Message.objects.bulk_create(
        Message(subject=f"Old {i}", created_at=at, body_stored=True) for i in range(count)
    )
    recipients = Recipient.objects.bulk_create(
        Recipient(message=m, address=f"r{m.pk}@example.com", created_at=at) for m in messages
    )
    Event.objects.bulk_create(
        Event(
            recipient=r,
            event_type="delivered",
            esp_name="Test",
            dedupe_key=f"k{r.pk}",
            timestamp=at,
            received_at=at,
            raw={},
        )
        for r in recipients
    )
    SendAttempt.objects.bulk_create(
        SendAttempt(message=m, outcome=SendAttempt.Outcome.SENT) for m in messages
    )


@pytest.mark.parametrize("mode", ["messages", "events"])
def test_purging_costs_the_same_statements_for_more_messages(mode):
    counts = {}
    for count, days in ((SMALL, 40), (LARGE, 50)):
        _old_mail(count, days)
        with Statements() as sent:
            result = purge(before=timezone.now() - timedelta(days=days - 1), mode=mode)
        assert (result.messages, result.events, result.batches) == (count, count, 1)
        counts[count] = sent.count
    assert counts[LARGE] == counts[SMALL], counts
    if mode == "messages":
        assert not Message.objects.exists() and not SendAttempt.objects.exists()
    else:
        assert Message.objects.count() == SMALL + LARGE and not Event.objects.exists()


# ---- outbox claims -----------------------------------------------------------------------------


def _waiting(count: int) -> None:
    messages = Message.objects.bulk_create(Message(subject=f"Wait {i}") for i in range(count))
    due = timezone.now() - timedelta(seconds=1)
    OutboxItem.objects.bulk_create(
        OutboxItem(message=m, connector="default", state=S.QUEUED, next_attempt_at=due)
        for m in messages
    )


def test_claiming_costs_the_same_statements_for_more_mail(settings):
    settings.WAGTAIL_MAILLOG = {"CONNECTORS": {"default": {"BACKEND": "tests.esp.ScriptedBackend"}}}
    counts = {}
    for count, owner in ((SMALL, "small"), (LARGE, "large")):
        _waiting(count)
        with Statements() as sent:
            claimed = worker.claim(LARGE, owner)
        assert len(claimed) == count
        assert all(item.state == S.SENDING and item.lease_owner == owner for item in claimed)
        counts[count] = sent.count
    assert counts[LARGE] == counts[SMALL], counts


def test_claims_skip_locked_rows_where_the_database_can():
    """PostgreSQL and MariaDB >= 10.6: a worker passes over rows another one holds."""
    _waiting(2)
    with CaptureQueriesContext(connection) as queries:
        worker.claim(1, "one")
    sql = " ".join(q["sql"] for q in queries).upper()
    if connection.vendor == "sqlite":  # one writer at a time: nothing to skip
        assert "SKIP LOCKED" not in sql
    else:
        assert connection.features.has_select_for_update_skip_locked
        assert "FOR UPDATE SKIP LOCKED" in sql


def test_purge_handles_every_foreign_key_to_what_it_deletes():
    """Purge deletes with one statement per table, without Django's collector: a new
    foreign key to a message, recipient or event must be handled there too."""
    from django.apps import apps

    from wagtail_maillog import purge as purging

    pointing = {
        (model, field.name)
        for model in apps.get_models(include_auto_created=True)
        for field in model._meta.get_fields(include_hidden=True)
        if field.many_to_one or field.one_to_one
        if field.concrete and field.related_model in (Message, Recipient, Event)
    }
    assert pointing == purging.POINTING_AT_MESSAGES
