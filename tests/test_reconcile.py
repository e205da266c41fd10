"""Lost webhooks: the hourly reconciliation asks the ESP, then gives up honestly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest
from anymail.signals import AnymailTrackingEvent
from django.core.mail import EmailMessage
from django.utils import timezone

from wagtail_maillog import label
from wagtail_maillog.events import ingest
from wagtail_maillog.models import Message, Recipient
from wagtail_maillog.outbox import worker
from wagtail_maillog.reconcile import reconcile
from wagtail_maillog.schedules import RECONCILE_TASK
from wagtail_maillog.status import Status

if TYPE_CHECKING:
    from tests.fake_esp import FakeESP

pytest_plugins = ["tests.fake_esp"]
pytestmark = pytest.mark.django_db


@pytest.fixture
def esp(fake_esp: FakeESP, settings) -> FakeESP:
    settings.EMAIL_BACKEND = "wagtail_maillog.outbox.backend.OutboxBackend"
    settings.WAGTAIL_MAILLOG = {
        "CONNECTORS": {
            "mg": {
                "BACKEND": "anymail.backends.mailgun.EmailBackend",
                "OPTIONS": {"api_key": "mg-key", "api_url": fake_esp.mailgun_api_url},
            },
            "smtp": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"},
        },
        "DEFAULT_CONNECTOR": "mg",
    }
    return fake_esp


def send(to: str, connector: str = "mg") -> Recipient:
    message = EmailMessage("Hi", "Body", "news@mg.example.com", [to])
    label(message, connector=connector)
    message.send()
    worker.process_outbox(time_budget=10)
    return Recipient.objects.get(message=Message.objects.get(pk=message._maillog_pk))


def age(recipient: Recipient, hours: float) -> None:
    Recipient.objects.filter(pk=recipient.pk).update(
        status_at=timezone.now() - timedelta(hours=hours)
    )


def test_stuck_recipients_are_asked_then_marked_unknown(esp, django_capture_on_commit_callbacks):
    found = send("found@example.com")
    silent = send("silent@example.com")
    fresh = send("fresh@example.com")
    local = send("local@example.com", connector="smtp")  # no ESP id: nobody will report
    for r in (found, silent, local):
        age(r, 30)
    at = (datetime.now(UTC) - timedelta(hours=29)).timestamp()
    esp.add_mailgun_event(found.esp_message_id, "delivered", "found@example.com", at)

    with django_capture_on_commit_callbacks(execute=True):
        summary = reconcile()
    assert "asked 2" in summary  # found and silent; fresh is too young, local has no id
    calls = esp.requests_to("/v3/mg.example.com/events")
    asked = {r.query["message-id"][0] for r in calls if "message-id" in r.query}
    assert asked == {found.esp_message_id.strip("<>"), silent.esp_message_id.strip("<>")}
    statuses = dict(Recipient.objects.values_list("address", "status"))
    assert statuses["found@example.com"] == Status.DELIVERED
    assert statuses["silent@example.com"] == Status.QUEUED  # 30 h: not given up yet

    age(silent, 80)
    age(local, 80)
    with django_capture_on_commit_callbacks(execute=True):
        assert "unknown 1" in reconcile()
    silent.refresh_from_db()
    assert silent.status == Status.UNKNOWN
    assert "72 hours" in silent.reason
    assert Recipient.objects.get(pk=local.pk).status == Status.SENT
    assert Recipient.objects.get(pk=fresh.pk).status == Status.QUEUED


def test_a_late_event_still_moves_an_unknown_recipient(esp):
    silent = send("late@example.com")
    age(silent, 100)
    reconcile()
    silent.refresh_from_db()
    assert silent.status == Status.UNKNOWN
    # The ESP's event arrives after all.
    ingest(
        [
            (
                AnymailTrackingEvent(
                    event_type="delivered",
                    timestamp=timezone.now(),
                    message_id=silent.esp_message_id,
                    recipient="late@example.com",
                    event_id="late-1",
                    esp_event={},
                ),
                "Mailgun",
            )
        ]
    )
    silent.refresh_from_db()
    assert silent.status == Status.DELIVERED


def test_off_when_not_wanted(esp, settings):
    settings.WAGTAIL_MAILLOG = {
        **settings.WAGTAIL_MAILLOG,
        "RECONCILE_AFTER_HOURS": None,
        "UNKNOWN_AFTER_HOURS": None,
    }
    silent = send("x@example.com")
    age(silent, 1000)
    assert reconcile() == "asked 0, caught up 0, unknown 0"
    assert esp.requests_to("/v3/mg.example.com/events") == []


def test_the_hourly_schedule_exists():
    from django_q.models import Schedule

    assert Schedule.objects.filter(func=RECONCILE_TASK, schedule_type=Schedule.HOURLY).exists()


def test_a_direct_send_left_sending_by_a_stopped_process_becomes_unknown(settings):
    """pre_send recorded it, then the process died before the ESP answered."""
    from wagtail_maillog.models import SendAttempt
    from wagtail_maillog.recording import record_message

    settings.EMAIL_BACKEND = "anymail.backends.test.EmailBackend"
    # What pre_send leaves behind (anymail's own send never returned).
    cut_short = record_message(EmailMessage("Hi", "b", "a@example.com", ["cut@example.com"]))
    recent = record_message(EmailMessage("Hi", "b", "a@example.com", ["now@example.com"]))
    Recipient.objects.filter(message=cut_short).update(
        status_at=timezone.now() - timedelta(minutes=61)
    )
    assert "abandoned sends 1" in reconcile()
    gone = Recipient.objects.get(message=cut_short)
    assert gone.status == Status.UNKNOWN and "stopped before the ESP answered" in gone.reason
    assert SendAttempt.objects.get(message=cut_short).outcome == SendAttempt.Outcome.INTERRUPTED
    assert Recipient.objects.get(message=recent).status == Status.SENDING


def test_outbox_mail_in_sending_is_left_to_its_lease(esp):
    from wagtail_maillog.models import OutboxItem, SendState

    message = EmailMessage("Hi", "Body", "news@mg.example.com", ["lease@example.com"])
    message.send()  # in the outbox, not sent yet
    item = OutboxItem.objects.get()
    OutboxItem.objects.filter(pk=item.pk).update(state=SendState.SENDING)
    Recipient.objects.update(status=Status.SENDING, status_at=timezone.now() - timedelta(hours=5))
    reconcile()
    assert Recipient.objects.get().status == Status.SENDING
