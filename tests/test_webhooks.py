"""Real ESP payloads POSTed to anymail's real webhook views, behind our guard."""

import json
from datetime import UTC, datetime

import pytest

from tests.utils import Statements, post_json, send_with_ids
from wagtail_maillog.models import Event, Recipient
from wagtail_maillog.status import Status

pytestmark = pytest.mark.django_db

POSTMARK = "/anymail/postmark/tracking/"
SPARKPOST = "/anymail/sparkpost/tracking/"
MAILJET = "/anymail/mailjet/tracking/"
MAILTRAP = "/anymail/mailtrap/tracking/"


def postmark(record_type: str, message_id: str, email: str, **extra):
    base = {
        "RecordType": record_type,
        "ServerID": 23,
        "MessageStream": "outbound",
        "MessageID": message_id,
        "Tag": "welcome",
        "Metadata": {},
    }
    if record_type == "Bounce":
        base |= {
            "ID": extra.pop("ID", 4323372036854775807),
            "Type": "HardBounce",
            "TypeCode": 1,
            "Name": "Hard bounce",
            "Email": email,
            "BouncedAt": "2026-11-05T16:33:54.9070259Z",
            "Description": "The server was unable to deliver your message.",
            "Details": "smtp;550 5.1.1 The email account does not exist.",
            "Inactive": True,
        }
    elif record_type == "Delivery":
        base |= {
            "Recipient": email,
            "DeliveredAt": "2026-11-05T16:33:50Z",
            "Details": "Test delivery webhook details",
        }
    elif record_type == "Open":
        base |= {
            "Recipient": email,
            "ReceivedAt": "2026-11-05T16:40:00Z",
            "FirstOpen": True,
            "UserAgent": "Mozilla/5.0 (Windows NT 10.0) Thunderbird/115",
            "Platform": "Desktop",
        }
    return base | extra


def sparkpost(kind: str, transmission_id: str, rcpt: str, event_id: str, ts: int, **extra):
    event = {
        "type": kind,
        "event_id": event_id,
        "transmission_id": transmission_id,
        "raw_rcpt_to": rcpt,
        "rcpt_to": rcpt.lower(),
        "timestamp": str(ts),
        "campaign_id": "newsletter",
        "rcpt_meta": {},
    } | extra
    group = "track_event" if kind in ("open", "click") else "message_event"
    return {"msys": {group: event}}


def test_postmark_delivery_then_open_then_late_delivery(client, webhook_auth):
    message = send_with_ids(["john@example.com"], "pm-1")

    assert (
        post_json(
            client, POSTMARK, postmark("Delivery", "pm-1", "john@example.com"), webhook_auth
        ).status_code
        == 200
    )
    assert (
        post_json(
            client, POSTMARK, postmark("Open", "pm-1", "John@Example.com"), webhook_auth
        ).status_code
        == 200
    )
    # Postmark retries the delivery webhook (new content: a different Details text)
    late = postmark("Delivery", "pm-1", "john@example.com", Details="retried")
    assert post_json(client, POSTMARK, late, webhook_auth).status_code == 200

    recipient = message.recipients.get()
    assert recipient.status == Status.OPENED
    assert recipient.opened_at == datetime(2026, 11, 5, 16, 40, tzinfo=UTC)
    events = list(recipient.events.order_by("pk"))
    assert [e.event_type for e in events] == ["delivered", "opened", "delivered"]
    assert events[1].user_agent.startswith("Mozilla/5.0")
    assert events[0].raw["RecordType"] == "Delivery"


def test_postmark_bounce_is_stored_once_when_retried(client, webhook_auth):
    message = send_with_ids(["gone@example.com"], "pm-2")
    bounce = postmark("Bounce", "pm-2", "gone@example.com")
    for _ in range(3):
        assert post_json(client, POSTMARK, bounce, webhook_auth).status_code == 200

    recipient = message.recipients.get()
    assert recipient.status == Status.BOUNCED
    assert recipient.reason == "The server was unable to deliver your message."
    event = Event.objects.get()
    assert event.event_id == "4323372036854775807"
    assert event.mta_response == "smtp;550 5.1.1 The email account does not exist."
    assert event.reject_reason == "bounced"


def test_one_message_id_for_many_recipients_matches_by_address(client, webhook_auth):
    """Postmark/SparkPost give every recipient the same id: a bounce for bob is bob's."""
    message = send_with_ids(["alice@example.com", "bob@example.com"], "shared-id")
    post_json(client, POSTMARK, postmark("Bounce", "shared-id", "bob@example.com"), webhook_auth)
    statuses = dict(message.recipients.values_list("address", "status"))
    assert statuses == {"alice@example.com": Status.QUEUED, "bob@example.com": Status.BOUNCED}


def test_sparkpost_batch_in_any_order(client, webhook_auth):
    message = send_with_ids(["a@example.com", "b@example.com", "c@example.com"], "sp-1")
    batch = [
        sparkpost(
            "click",
            "sp-1",
            "a@example.com",
            "e4",
            400,
            target_link_url="https://example.com/x",
            user_agent="UA",
        ),
        sparkpost("delivery", "sp-1", "a@example.com", "e2", 200),
        sparkpost("delay", "sp-1", "b@example.com", "e3", 100, raw_reason="421 try later"),
        sparkpost(
            "bounce",
            "sp-1",
            "b@example.com",
            "e5",
            500,
            bounce_class="10",
            raw_reason="550 5.1.1 unknown user",
        ),
        sparkpost("delay", "sp-1", "b@example.com", "e6", 600, raw_reason="421 again"),
        sparkpost("delivery", "sp-1", "c@example.com", "e7", 300),
        sparkpost("delivery", "sp-1", "c@example.com", "e7", 300),  # same event twice
    ]
    response = post_json(client, SPARKPOST, batch, webhook_auth)
    assert response.status_code == 200

    rows = {r.address: r for r in message.recipients.all()}
    assert rows["a@example.com"].status == Status.CLICKED
    assert rows["a@example.com"].opened_at is not None  # a click implies an open
    assert rows["b@example.com"].status == Status.INVALID  # bounce class 10
    assert rows["b@example.com"].reason == "550 5.1.1 unknown user"
    assert rows["c@example.com"].status == Status.DELIVERED
    assert Event.objects.count() == 6
    click = Event.objects.get(event_type="clicked")
    assert click.click_url == "https://example.com/x"

    # The whole batch again: nothing new is stored, nothing changes.
    assert post_json(client, SPARKPOST, batch, webhook_auth).status_code == 200
    assert Event.objects.count() == 6


def test_mailjet_events_without_ids_are_deduplicated_by_content(client, webhook_auth):
    message = send_with_ids(["x@example.com"], "19421777835146490")
    events = [
        {
            "event": "sent",
            "time": 1733333949,
            "MessageID": 19421777835146490,
            "email": "x@example.com",
            "smtp_reply": "sent (250 2.0.0 OK)",
        },
        {
            "event": "open",
            "time": 1733334000,
            "MessageID": 19421777835146490,
            "email": "x@example.com",
            "ip": "127.0.0.1",
            "geo": "DK",
            "agent": "Mozilla/5.0",
        },
    ]
    assert post_json(client, MAILJET, events, webhook_auth).status_code == 200
    assert post_json(client, MAILJET, events, webhook_auth).status_code == 200
    assert Event.objects.count() == 2
    assert message.recipients.get().status == Status.OPENED


def test_mailtrap_unknown_message_is_kept_as_orphan_and_adopted_later(client, webhook_auth):
    payload = {
        "events": [
            {
                "event": "delivery",
                "message_id": "mt-9",
                "email": "late@example.com",
                "timestamp": 1733333949,
                "event_id": "mt-ev-1",
            },
            {
                "event": "open",
                "message_id": "mt-9",
                "email": "late@example.com",
                "timestamp": 1733334949,
                "event_id": "mt-ev-2",
                "user_agent": "UA",
            },
        ]
    }
    assert post_json(client, MAILTRAP, payload, webhook_auth).status_code == 200
    assert Event.objects.filter(recipient__isnull=True).count() == 2

    message = send_with_ids(["late@example.com"], "mt-9")
    recipient = message.recipients.get()
    assert recipient.status == Status.OPENED
    assert recipient.events.count() == 2
    assert not Event.objects.filter(recipient__isnull=True).exists()


@pytest.mark.parametrize(
    "url, body",
    [
        (POSTMARK, "{not json"),
        (POSTMARK, "[1, 2, 3]"),
        (POSTMARK, "{}"),
        (POSTMARK, '{"RecordType": "Nonsense"}'),
        (SPARKPOST, '{"msys": "wrong shape"}'),
        (SPARKPOST, '[{"msys": {"message_event": {"timestamp": "1"}}}]'),
        (MAILJET, '"a string"'),
        (MAILTRAP, '{"events": [{"event": "delivery"}]}'),
        (MAILTRAP, "\xff\xfe"),
    ],
)
def test_malformed_bodies_answer_400_and_write_nothing(client, webhook_auth, url, body):
    send_with_ids(["x@example.com"], "id-1")
    response = client.post(url, data=body, content_type="application/json", **webhook_auth)
    assert response.status_code == 400
    assert not Event.objects.exists()
    assert Recipient.objects.get().status == Status.QUEUED


def test_wrong_credentials_answer_400_and_write_nothing(client):
    client.raise_request_exception = False
    bad = {"HTTP_AUTHORIZATION": "Basic d3Jvbmc6d3Jvbmc="}
    payload = postmark("Delivery", "pm-1", "john@example.com")
    assert post_json(client, POSTMARK, payload, bad).status_code == 400
    assert post_json(client, POSTMARK, payload, {}).status_code == 400
    assert not Event.objects.exists()


def test_a_batch_costs_the_same_number_of_queries_at_any_size(client, webhook_auth):
    def batch_of(n: int, prefix: str):
        ids = {f"{prefix}{i}@example.com": f"{prefix}-tx" for i in range(n)}
        send_with_ids(list(ids), ids)
        return [
            sparkpost("delivery", f"{prefix}-tx", addr, f"{prefix}-ev-{i}", 100)
            for i, addr in enumerate(ids)
        ]

    counts = {}
    for n, prefix in ((10, "small"), (1000, "large")):
        batch = batch_of(n, prefix)
        with Statements() as sent:  # on MariaDB, as the server counts them
            assert post_json(client, SPARKPOST, batch, webhook_auth).status_code == 200
        counts[n] = sent.count
    assert Recipient.objects.filter(status=Status.DELIVERED).count() == 1010
    # 1,000 events may need a few more chunks, never a query per event.
    assert counts[1000] <= counts[10] + 6, counts
    assert counts[1000] <= 20, counts


def test_empty_batch_is_a_ping(client, webhook_auth):
    assert post_json(client, MAILJET, [], webhook_auth).status_code == 200
    assert not Event.objects.exists()


def test_raw_payload_is_json(client, webhook_auth):
    send_with_ids(["j@example.com"], "pm-7")
    post_json(client, POSTMARK, postmark("Delivery", "pm-7", "j@example.com"), webhook_auth)
    raw = Event.objects.get().raw
    assert json.loads(json.dumps(raw))["MessageID"] == "pm-7"


def test_a_failing_receiver_of_another_app_gets_a_retry_not_a_400(client, webhook_auth):
    """Not bad input: the ESP must retry (5xx), and nothing is half-stored."""
    from anymail.signals import tracking

    def broken(sender, event, esp_name, **kwargs):
        raise RuntimeError("another app is broken")

    send_with_ids(["x@example.com"], "pm-1")
    tracking.connect(broken, dispatch_uid="test-broken")
    client.raise_request_exception = False
    try:
        payload = postmark("Delivery", "pm-1", "x@example.com")
        assert post_json(client, POSTMARK, payload, webhook_auth).status_code == 500
    finally:
        tracking.disconnect(dispatch_uid="test-broken")
    assert not Event.objects.exists()


def test_address_health_is_stored_with_the_events_or_not_at_all(client, webhook_auth, monkeypatch):
    """A failure while marking the address undoes the events too: the ESP's retry
    then stores both (were the address marked after the commit, the retry would find
    the events stored and the address would stay unmarked)."""
    from django.db import DatabaseError

    from wagtail_maillog.addresses import health
    from wagtail_maillog.models import Address, AddressStatus

    send_with_ids(["gone@example.com"], "pm-9")
    bounce = postmark("Bounce", "pm-9", "gone@example.com")
    real = health.set_status

    def failing(*args, **kwargs):
        raise DatabaseError("lock timeout")

    monkeypatch.setattr(health, "set_status", failing)
    assert post_json(client, POSTMARK, bounce, webhook_auth).status_code == 503
    assert not Event.objects.exists()
    assert Recipient.objects.get().status != Status.BOUNCED
    monkeypatch.setattr(health, "set_status", real)
    assert post_json(client, POSTMARK, bounce, webhook_auth).status_code == 200
    assert Event.objects.count() == 1
    assert Address.objects.get(address="gone@example.com").status == AddressStatus.BOUNCED


def test_a_failing_status_changed_receiver_is_logged_and_loses_nothing(
    client, webhook_auth, django_capture_on_commit_callbacks, caplog
):
    from wagtail_maillog.models import Address, AddressStatus
    from wagtail_maillog.signals import status_changed

    seen = []

    def broken(sender, changes, **kwargs):
        raise RuntimeError("another app is broken")

    def working(sender, changes, **kwargs):
        seen.extend(change.new for change in changes)

    send_with_ids(["gone@example.com"], "pm-8")
    status_changed.connect(broken, dispatch_uid="test-broken")
    status_changed.connect(working, dispatch_uid="test-working")
    try:
        with django_capture_on_commit_callbacks(execute=True):
            payload = postmark("Bounce", "pm-8", "gone@example.com")
            assert post_json(client, POSTMARK, payload, webhook_auth).status_code == 200
    finally:
        status_changed.disconnect(dispatch_uid="test-broken")
        status_changed.disconnect(dispatch_uid="test-working")
    assert seen == [Status.BOUNCED]  # the others still hear it
    assert "status_changed receiver" in caplog.text and "another app is broken" in caplog.text
    assert Event.objects.count() == 1
    assert Address.objects.get(address="gone@example.com").status == AddressStatus.BOUNCED
