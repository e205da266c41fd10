"""Member addresses: events move them, suppression holds mail back, double opt-in."""

from __future__ import annotations

import re
import time
from datetime import timedelta

import pytest
from django.core import mail
from django.core.mail import EmailMessage, send_mail
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tests.testapp.models import Member
from tests.utils import post_json, send_with_ids
from wagtail_maillog import label
from wagtail_maillog.addresses import members, normalize
from wagtail_maillog.addresses.confirmation import resend_unanswered, send_requests
from wagtail_maillog.addresses.health import clear_problem, expire_deferred
from wagtail_maillog.models import Address, AddressStatus, Recipient, SendAttempt
from wagtail_maillog.status import Status

pytestmark = pytest.mark.django_db

POSTMARK = "/anymail/postmark/tracking/"
SPARKPOST = "/anymail/sparkpost/tracking/"


@pytest.fixture
def commit(django_capture_on_commit_callbacks):
    """Run on-commit hooks (address updates follow the committed event batch)."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


def status_of(address: str) -> str:
    return Address.objects.get(address=address).status


@pytest.mark.parametrize(
    "payload, expected",
    [
        (
            {
                "RecordType": "Bounce",
                "ID": 1,
                "Type": "HardBounce",
                "Email": "{a}",
                "BouncedAt": "2026-11-05T16:33:54Z",
            },
            AddressStatus.BOUNCED,
        ),
        (
            {
                "RecordType": "SpamComplaint",
                "ID": 2,
                "Type": "SpamComplaint",
                "Email": "{a}",
                "BouncedAt": "2026-11-05T16:33:54Z",
            },
            AddressStatus.SPAM,
        ),
        (
            {
                "RecordType": "SubscriptionChange",
                "Recipient": "{a}",
                "SuppressSending": True,
                "SuppressionReason": "ManualSuppression",
                "ChangedAt": "2026-11-05T16:33:54Z",
            },
            AddressStatus.UNSUBSCRIBED,
        ),
        (
            {
                "RecordType": "Bounce",
                "ID": 3,
                "Type": "Blocked",
                "Email": "{a}",
                "BouncedAt": "2026-11-05T16:33:54Z",
            },
            AddressStatus.BLOCKED,
        ),
        (
            {
                "RecordType": "Bounce",
                "ID": 4,
                "Type": "BadEmailAddress",
                "Email": "{a}",
                "BouncedAt": "2026-11-05T16:33:54Z",
            },
            AddressStatus.INVALID,
        ),
    ],
)
def test_postmark_events_move_the_address(client, webhook_auth, commit, payload, expected):
    address = "member@example.com"
    send_with_ids([address], "pm-1")
    body = {k: (v.format(a=address) if isinstance(v, str) else v) for k, v in payload.items()}
    with commit():
        assert (
            post_json(client, POSTMARK, {**body, "MessageID": "pm-1"}, webhook_auth).status_code
            == 200
        )
    assert status_of(address) == expected
    change = Address.objects.get(address=address).changes.get()
    assert change.new == expected and change.recipient_id == Recipient.objects.get().pk


def test_sparkpost_batch_marks_several_addresses_at_once(client, webhook_auth, commit):
    to = ["a@example.com", "b@example.com", "c@example.com"]
    send_with_ids(to, "sp-1")
    batch = [
        {
            "msys": {
                "message_event": {
                    "type": "bounce",
                    "bounce_class": "10",
                    "event_id": "1",
                    "transmission_id": "sp-1",
                    "raw_rcpt_to": "a@example.com",
                    "timestamp": "1",
                }
            }
        },
        {
            "msys": {
                "message_event": {
                    "type": "spam_complaint",
                    "event_id": "2",
                    "transmission_id": "sp-1",
                    "raw_rcpt_to": "b@example.com",
                    "timestamp": "2",
                }
            }
        },
        {
            "msys": {
                "message_event": {
                    "type": "delivery",
                    "event_id": "3",
                    "transmission_id": "sp-1",
                    "raw_rcpt_to": "c@example.com",
                    "timestamp": "3",
                }
            }
        },
    ]
    with commit(), CaptureQueriesContext(connection) as queries:
        post_json(client, SPARKPOST, batch, webhook_auth)
    # PostgreSQL: the batch's addresses are locked once, in address order.
    table = Address._meta.db_table
    locks = [q for q in queries if "FOR NO KEY UPDATE" in q["sql"] and table in q["sql"]]
    assert len(locks) == (1 if connection.vendor == "postgresql" else 0)
    assert status_of("a@example.com") == AddressStatus.INVALID
    assert status_of("b@example.com") == AddressStatus.SPAM
    assert not Address.objects.filter(address="c@example.com", status__in=["bounced"]).exists()


def test_a_deferral_is_not_a_problem_until_it_lasts(client, webhook_auth, commit):
    send_with_ids(["slow@example.com"], "pm-9")
    delay = {
        "RecordType": "Bounce",
        "ID": 9,
        "Type": "Transient",
        "MessageID": "pm-9",
        "Email": "slow@example.com",
        "BouncedAt": timezone.now().isoformat(),
    }
    with commit():
        post_json(client, POSTMARK, delay, webhook_auth)
    assert Recipient.objects.get().status == Status.DEFERRED
    assert not Address.objects.filter(address="slow@example.com", status="bounced").exists()

    with commit():
        assert expire_deferred() == 0  # 5 days have not passed
    Recipient.objects.update(status_at=timezone.now() - timedelta(days=6))
    with commit():
        assert expire_deferred() == 1
    assert Recipient.objects.get().status == Status.BOUNCED
    assert status_of("slow@example.com") == AddressStatus.BOUNCED


def test_a_suppressed_address_gets_no_esp_call_at_all():
    Address.objects.create(address="gone@example.com", status=AddressStatus.BOUNCED)
    assert send_mail("Hi", "b", "s@example.com", ["Gone@Example.com"]) == 0
    assert mail.outbox == []  # anymail's test backend: the ESP was never called
    recipient = Recipient.objects.get()
    assert recipient.status == Status.BLOCKED and "Problem (bounced)" in recipient.reason
    assert SendAttempt.objects.get().outcome == "blocked"


def test_only_the_suppressed_recipient_is_held_back():
    Address.objects.create(address="spam@example.com", status=AddressStatus.SPAM)
    EmailMessage("Hi", "b", "s@example.com", ["ok@example.com"], cc=["spam@example.com"]).send()
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["ok@example.com"] and mail.outbox[0].cc == []
    statuses = dict(Recipient.objects.values_list("address", "status"))
    assert statuses == {"ok@example.com": Status.SENT, "spam@example.com": Status.BLOCKED}


def test_transactional_mail_can_opt_out(settings):
    Address.objects.create(address="fixed@example.com", status=AddressStatus.BOUNCED)
    msg = EmailMessage("Your receipt", "b", "s@example.com", ["fixed@example.com"])
    label(msg, suppress=False)
    msg.send()
    with_source = EmailMessage("Reset", "b", "s@example.com", ["fixed@example.com"])
    label(with_source, source="password_reset")
    with_source.send()
    assert len(mail.outbox) == 2


def _link(message) -> str:
    return re.search(r"https?://\S+/mail/confirm/\S+/", message.body).group(0)


def _path(url: str) -> str:
    return url.split("testserver", 1)[1]


def test_confirmation_end_to_end_over_http(client):
    assert send_requests(["new@example.com"]) == 1
    assert status_of("new@example.com") == AddressStatus.REQUESTED
    request = mail.outbox[0]
    assert request.to == ["new@example.com"]
    url = _path(_link(request))
    # the request went through the normal sending path: it is in the log
    assert Recipient.objects.get(address="new@example.com").message.source == "confirmation"

    page = client.get(url)  # a mail scanner opening the link changes nothing
    assert page.status_code == 200 and "Confirm my address" in page.content.decode()
    assert status_of("new@example.com") == AddressStatus.REQUESTED

    done = client.post(url)
    assert done.status_code == 200 and "is confirmed" in done.content.decode()
    assert status_of("new@example.com") == AddressStatus.CONFIRMED

    again = client.post(url)  # replay
    assert again.status_code == 200 and "already confirmed" in again.content.decode()
    assert Address.objects.get(address="new@example.com").changes.count() == 2


def test_tampered_expired_and_superseded_links(client, monkeypatch):
    send_requests(["x@example.com"])
    url = _path(_link(mail.outbox[0]))
    token = url.rstrip("/").rsplit("/", 1)[1]
    tampered = url.replace(token, token[:-3] + ("aaa" if not token.endswith("aaa") else "bbb"))
    response = client.post(tampered)
    assert response.status_code == 404 and "not valid" in response.content.decode()
    assert client.get("/mail/confirm/garbage/").status_code == 404

    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 15 * 86400)
    expired = client.post(url)
    assert expired.status_code == 410 and "expired" in expired.content.decode()
    monkeypatch.setattr(time, "time", real_time)

    Address.objects.filter(address="x@example.com").update(
        requested_at=timezone.now() - timedelta(days=8)
    )
    assert resend_unanswered(days=7) == 1
    newer = _path(_link(mail.outbox[1]))
    assert client.post(url).status_code == 410  # the old link was replaced
    assert client.post(newer).status_code == 200
    assert status_of("x@example.com") == AddressStatus.CONFIRMED


def test_member_address_change_after_the_request(client):
    member = Member.objects.create(name="Ann", email="ann@example.com")
    send_requests(["ann@example.com"])
    url = _path(_link(mail.outbox[0]))
    assert "Ann" in mail.outbox[0].body
    assert Recipient.objects.get().message.related_object == member

    member.email = "ann@new.example"
    member.save()
    response = client.post(url)
    assert response.status_code == 410
    assert status_of("ann@example.com") == AddressStatus.REQUESTED
    assert status_of("ann@new.example") == AddressStatus.UNCONFIRMED
    assert members.member_for("ANN@new.example") == member


def test_a_changed_address_starts_unconfirmed():
    Address.objects.create(address="b@new.example", status=AddressStatus.CONFIRMED)
    member = Member.objects.create(name="Bo", email="bo@example.com")
    member.email = "b@new.example"
    member.save()
    address = Address.objects.get(address="b@new.example")
    assert address.status == AddressStatus.UNCONFIRMED
    assert "changed from bo@example.com" in address.changes.get().cause


def test_confirmed_members_only():
    Member.objects.create(name="Yes", email="yes@example.com")
    Member.objects.create(name="No", email="no@example.com")
    Member.objects.create(name="Bad", email="bad@example.com")
    # registering the member created its address row (unconfirmed)
    assert Address.objects.filter(status=AddressStatus.UNCONFIRMED).count() == 3
    Address.objects.filter(address="yes@example.com").update(status=AddressStatus.CONFIRMED)
    Address.objects.filter(address="bad@example.com").update(status=AddressStatus.BOUNCED)
    assert [m.name for m in members.confirmed(Member)] == ["Yes"]


def test_clear_problem_keeps_the_history():
    address = Address.objects.create(address="fixed@example.com", status=AddressStatus.BOUNCED)
    assert clear_problem([address]) == 1
    address.refresh_from_db()
    assert address.status == AddressStatus.UNCONFIRMED
    assert [(c.old, c.new) for c in address.changes.all()] == [("bounced", "unconfirmed")]
    assert send_requests(["fixed@example.com"]) == 1


def test_no_request_to_problem_or_confirmed_addresses():
    Address.objects.create(address="p@example.com", status=AddressStatus.SPAM)
    Address.objects.create(address="c@example.com", status=AddressStatus.CONFIRMED)
    assert send_requests(["p@example.com", "c@example.com"]) == 0
    assert mail.outbox == []


def test_the_outbox_suppresses_at_hand_over(settings):
    from wagtail_maillog.models import OutboxItem
    from wagtail_maillog.outbox.worker import process_outbox

    settings.EMAIL_BACKEND = "wagtail_maillog.outbox.backend.OutboxBackend"
    settings.WAGTAIL_MAILLOG = {
        "CONNECTORS": {"default": {"BACKEND": "anymail.backends.test.EmailBackend"}}
    }
    Address.objects.create(address="gone@example.com", status=AddressStatus.BOUNCED)
    send_mail("Later", "b", "s@example.com", ["gone@example.com"])
    assert "blocked 1" in process_outbox(time_budget=5)
    assert mail.outbox == [] and not OutboxItem.objects.exists()
    assert SendAttempt.objects.get().outcome == "blocked"
    assert Recipient.objects.get().status == Status.BLOCKED


def test_confirmed_members_match_whatever_the_case():
    Member.objects.create(name="Ann", email=" Ann@Example.com")
    Address.objects.filter(address="ann@example.com").update(status=AddressStatus.CONFIRMED)
    assert [m.name for m in members.confirmed(Member)] == ["Ann"]


def test_a_problem_voids_links_sent_before_it(client):
    from wagtail_maillog.addresses.health import set_status

    send_requests(["late@example.com"])
    url = _path(_link(mail.outbox[0]))
    set_status([("late@example.com", AddressStatus.SPAM, "complained")])
    assert client.post(url).status_code == 410
    assert status_of("late@example.com") == AddressStatus.SPAM


def test_sync_members_made_before_installation():
    from django.core.management import call_command

    Member.objects.bulk_create([Member(name="Old", email="old@example.com")])  # no signals
    assert not Address.objects.filter(address="old@example.com").exists()
    call_command("maillog_sync_members", stdout=__import__("io").StringIO())
    assert status_of("old@example.com") == AddressStatus.UNCONFIRMED


def test_sync_members_reads_page_by_page():
    """Pages by primary key (a write between pages must not meet an open cursor)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from wagtail_maillog.addresses import members

    emails = [f"page{i}@example.com" for i in range(5)]
    Member.objects.bulk_create([Member(name=e, email=e) for e in emails])  # no signals
    with CaptureQueriesContext(connection) as queries:
        assert members.sync(chunk=2) >= 5
    member_table = Member._meta.db_table
    assert sum(member_table in q["sql"] for q in queries) == 3  # pages of 2, 2 and 1
    assert set(Address.objects.filter(address__in=emails).values_list("address", flat=True)) == set(
        emails
    )


def test_the_outbox_suppresses_for_non_anymail_connectors_too(settings):
    """An SMTP connector has no anymail pre_send: the worker holds problem addresses back."""
    from wagtail_maillog.models import OutboxItem
    from wagtail_maillog.outbox.worker import process_outbox

    settings.EMAIL_BACKEND = "wagtail_maillog.outbox.backend.OutboxBackend"
    settings.WAGTAIL_MAILLOG = {
        "CONNECTORS": {"default": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"}}
    }
    Address.objects.create(address="gone@example.com", status=AddressStatus.BOUNCED)
    send_mail("Mixed", "b", "s@example.com", ["gone@example.com", "ok@example.com"])
    send_mail("Only gone", "b", "s@example.com", ["gone@example.com"])
    result = process_outbox(time_budget=5)
    assert "blocked 1" in result and "sent 1" in result
    (sent,) = mail.outbox
    assert sent.to == ["ok@example.com"]
    assert not OutboxItem.objects.exists()
    statuses = sorted(Recipient.objects.values_list("address", "status"))
    assert statuses == [
        ("gone@example.com", Status.BLOCKED),
        ("gone@example.com", Status.BLOCKED),
        ("ok@example.com", Status.SENT),
    ]


@pytest.mark.parametrize(
    ("given", "compared"),
    [
        (" Ann@Example.COM ", "ann@example.com"),
        ("soren@XN--BCHER-KVA.example", "soren@bücher.example"),
        ("x@xn--mnchen-3ya.xn--bcher-kva.de", "x@münchen.bücher.de"),
        ("soren@bücher.example", "soren@bücher.example"),
        ("x@xn--.example", "x@xn--.example"),  # not IDNA: kept as it came
        ("xn--bcher-kva", "xn--bcher-kva"),  # no domain
    ],
)
def test_addresses_are_compared_with_their_domain_in_unicode(given, compared):
    assert normalize(given) == compared
