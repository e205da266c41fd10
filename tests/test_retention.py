"""Retention: the purge service, its command and its daily django-q2 schedule."""

import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone
from django_q.models import Schedule

from tests.utils import post_json, send_with_ids
from wagtail_maillog.models import Event, Message, Recipient, SendAttempt
from wagtail_maillog.purge import purge, purge_expired

pytestmark = pytest.mark.django_db


@pytest.fixture
def history(client, webhook_auth, settings):
    """Three old messages with events, one new one, one old orphan event (bodies kept)."""
    settings.WAGTAIL_MAILLOG = {**settings.WAGTAIL_MAILLOG, "STORE_BODY": True}
    old = [send_with_ids([f"old{i}@example.com"], f"old-{i}") for i in range(3)]
    new = send_with_ids(["new@example.com"], "new-1")
    for i in range(3):
        event = {
            "RecordType": "Delivery",
            "MessageID": f"old-{i}",
            "Recipient": f"old{i}@example.com",
            "DeliveredAt": "2026-01-01T00:00:00Z",
        }
        post_json(client, "/anymail/postmark/tracking/", event, webhook_auth)
    orphan = {
        "RecordType": "Delivery",
        "MessageID": "nobody",
        "Recipient": "x@example.com",
        "DeliveredAt": "2026-01-01T00:00:00Z",
    }
    post_json(client, "/anymail/postmark/tracking/", orphan, webhook_auth)
    long_ago = timezone.now() - timedelta(days=40)
    Message.objects.filter(pk__in=[m.pk for m in old]).update(created_at=long_ago)
    Recipient.objects.filter(message__in=old).update(created_at=long_ago)
    Event.objects.filter(recipient__isnull=True).update(received_at=long_ago)
    resend = send_with_ids(["old0@example.com"], "re-1")
    Message.objects.filter(pk=resend.pk).update(resent_from=old[0])
    return old, new


def test_purge_deletes_old_messages_in_batches_and_keeps_new_ones(history):
    old, new = history
    result = purge(batch_size=2)
    assert result.messages == 3 and result.events == 4 and result.batches >= 2
    assert set(Message.objects.values_list("subject", flat=True)) == {"Hello"}
    assert Message.objects.count() == 2  # the new one and the resend
    assert not Event.objects.filter(recipient__isnull=True).exists()
    assert not SendAttempt.objects.filter(message_id__in=[m.pk for m in old]).exists()
    assert (
        Message.objects.get(esp_name="Test", recipients__address="old0@example.com").resent_from
        is None
    )


def test_events_mode_keeps_message_and_status_rows(history, settings):
    settings.WAGTAIL_MAILLOG = {"PURGE_MODE": "events"}
    old, _new = history
    purge()
    assert Message.objects.count() == 5
    assert Recipient.objects.filter(message__in=old, status="delivered").count() == 3
    assert not Event.objects.filter(recipient__message__in=old).exists()
    assert not Message.objects.filter(pk__in=[m.pk for m in old], body_stored=True).exists()
    assert Message.objects.filter(body_stored=True).count() == 2


def test_retention_setting_and_off_switch(history, settings):
    settings.WAGTAIL_MAILLOG = {"RETENTION_DAYS": 60}
    assert purge().messages == 0
    settings.WAGTAIL_MAILLOG = {"RETENTION_DAYS": None}
    assert purge().messages == 0
    settings.WAGTAIL_MAILLOG = {}
    assert "purged 3 messages" in purge_expired()


def test_command_with_dry_run(history):
    out = io.StringIO()
    call_command("maillog_purge", "--dry-run", stdout=out)
    assert "Would purge 3 messages" in out.getvalue()
    assert Message.objects.count() == 5
    call_command("maillog_purge", "--days", "10", stdout=out)
    assert "Purged 3 messages" in out.getvalue()
    assert Message.objects.count() == 2


def test_migrate_creates_the_daily_purge_schedule():
    schedule = Schedule.objects.get(func="wagtail_maillog.purge.purge_expired")
    assert schedule.schedule_type == Schedule.DAILY


def test_mail_still_in_the_outbox_is_never_purged(history, settings):
    from wagtail_maillog.models import OutboxItem

    old, _new = history
    OutboxItem.objects.create(
        message=old[1], connector="default", state="scheduled", payload=b"", payload_mac=""
    )
    purge()
    assert Message.objects.filter(pk=old[1].pk).exists()
    assert not Message.objects.filter(pk__in=[old[0].pk, old[2].pk]).exists()
