"""A mailing through real anymail backends over HTTP (a loopback fake of Mailgun
and Postmark): ESP calls per chunk, and "update results" catching up lost webhooks."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest
from django.utils import timezone

from tests.testapp.models import Member
from wagtail_maillog.addresses.health import set_status
from wagtail_maillog.deliverability import figures, rollup
from wagtail_maillog.mailings import results, sending
from wagtail_maillog.models import AddressStatus, Mailing
from wagtail_maillog.outbox import worker
from wagtail_maillog.status import Status

if TYPE_CHECKING:
    from tests.fake_esp import FakeESP

pytest_plugins = ["tests.fake_esp"]
pytestmark = pytest.mark.django_db


@pytest.fixture
def esp(fake_esp: FakeESP, settings) -> FakeESP:
    settings.WAGTAIL_MAILLOG = {
        "CONNECTORS": {
            "mg": {
                "BACKEND": "anymail.backends.mailgun.EmailBackend",
                "OPTIONS": {"api_key": "mg-key", "api_url": fake_esp.mailgun_api_url},
            },
            "pm": {
                "BACKEND": "anymail.backends.postmark.EmailBackend",
                "OPTIONS": {"server_token": "pm-token", "api_url": fake_esp.postmark_api_url},
            },
        },
        "DEFAULT_CONNECTOR": "mg",
        "MAILING_BATCH_SIZE": 3,
        "MAILING_FROM_ADDRESSES": ["news@mg.example.com"],
    }
    for i in range(7):
        Member.objects.create(name=f"Member {i}", email=f"m{i}@example.com")
    set_status([(f"m{i}@example.com", AddressStatus.CONFIRMED, "t") for i in range(7)])
    Member.objects.create(name="Gone", email="gone@example.com")
    set_status([("gone@example.com", AddressStatus.BOUNCED, "t")])
    return fake_esp


def send(connector: str, capture) -> Mailing:
    mailing = Mailing.objects.create(
        subject="News for {{ name }}",
        body="<p>Hi {{ name }}</p>",
        from_email="news@mg.example.com",
        audience="members",
        connector=connector,
    )
    with capture(execute=True):
        sending.send(mailing)
    worker.process_outbox(time_budget=20)
    mailing.refresh_from_db()
    return mailing


def test_mailgun_gets_one_call_per_chunk_with_recipient_variables(
    esp, django_capture_on_commit_callbacks
):
    mailing = send("mg", django_capture_on_commit_callbacks)
    assert [s.batch for s in esp.sent] == [True, True, True]  # 7 recipients, chunks of 3
    assert sorted(len(s.recipients) for s in esp.sent) == [1, 3, 3]
    assert {s.subject for s in esp.sent} == {"News for %recipient.name%"}
    # Each member's own one-click unsubscribe, through Mailgun's recipient-variables.
    for sent in esp.sent:
        headers = dict(sent.headers)
        assert headers["h:List-Unsubscribe"] == "%recipient.h:List-Unsubscribe%"
        variables = json.loads(sent.recipient_variables)
        assert set(variables) == set(sent.recipients)
        links = {v["h:List-Unsubscribe"] for v in variables.values()}
        assert len(links) == len(sent.recipients)  # one per member
        assert all(
            v["h:List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click" for v in variables.values()
        )
    rows = sending.recipients_of(mailing)
    assert rows.count() == 7
    assert not rows.filter(esp_message_id="").exists()
    assert mailing.skipped == {AddressStatus.BOUNCED: 1}


def test_each_batch_recipient_shows_what_they_received(
    esp, settings, django_capture_on_commit_callbacks, admin_client
):
    """Issue 17.3: Mailgun filled each member's values into the batch; the log shows
    each member their own subject and body, never a placeholder, and no token."""
    settings.WAGTAIL_MAILLOG = {**settings.WAGTAIL_MAILLOG, "STORE_BODY": True}
    mailing = send("mg", django_capture_on_commit_callbacks)
    rows = list(sending.recipients_of(mailing).select_related("message").order_by("address"))
    assert len(rows) == 7
    message = rows[0].message
    assert message.subject == "News for %recipient.name%"  # as handed to the ESP
    assert message.merge_field == "%recipient.{}%"
    for n, row in enumerate(rows):
        assert row.subject == f"News for Member {n}"
        text, html = row.body()
        assert f"Hi Member {n}" in text and f"Hi Member {n}" in html
        assert "%recipient" not in text + html
        assert "[redacted]" in text  # the unsubscribe link's token is never kept
        assert row.merge_values["email"] == f"m{n}@example.com"

    listing = admin_client.get("/admin/maillog/", {"source": "mailing"}).content.decode()
    assert "News for Member 3" in listing and "%recipient" not in listing
    page = admin_client.get(f"/admin/maillog/{message.pk}/").content.decode()
    for n, row in enumerate(rows):
        assert (f"News for Member {n}" in page) == (row.message_id == message.pk)
    copy = admin_client.get(f"/admin/maillog/{rows[2].message_id}/", {"recipient": rows[2].pk})
    body = copy.content.decode()
    assert "As received by m2@example.com" in body
    assert "Hi Member 2" in body and "Hi %recipient.name%" not in body


def test_postmark_without_template_gets_one_rendered_call_per_recipient(
    esp, django_capture_on_commit_callbacks
):
    mailing = send("pm", django_capture_on_commit_callbacks)
    assert len(esp.sent) == 7
    assert sorted(s.subject for s in esp.sent) == [f"News for Member {i}" for i in range(7)]
    assert sending.recipients_of(mailing).filter(status=Status.SENT).count() == 7


def test_update_results_asks_the_esp_about_unfinished_recipients(
    esp, django_capture_on_commit_callbacks
):
    mailing = send("mg", django_capture_on_commit_callbacks)
    rows = {r.address: r for r in sending.recipients_of(mailing)}
    at = datetime.now(UTC) - timedelta(minutes=5)
    for i in range(6):
        esp.add_mailgun_event(
            rows[f"m{i}@example.com"].esp_message_id,
            "delivered",
            f"m{i}@example.com",
            at.timestamp(),
        )
    esp.add_mailgun_event(
        rows["m6@example.com"].esp_message_id,
        "failed",
        "m6@example.com",
        at.timestamp(),
        severity="permanent",
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert results.request_refresh(mailing)  # the django-q2 task runs in-process here
    mailing.refresh_from_db()
    assert not mailing.refresh_running and mailing.refresh_note == ""
    assert (mailing.refresh_done, mailing.refresh_total) == (7, 7)
    summary = results.summary(mailing)
    assert summary.counts == {Status.DELIVERED: 6, Status.BOUNCED: 1}
    assert [r.address for r in results.problem_recipients(mailing)] == ["m6@example.com"]
    # the bounce reached the address's health too
    from wagtail_maillog.models import Address

    assert Address.objects.get(address="m6@example.com").status == AddressStatus.BOUNCED


def test_update_results_reports_an_esp_error(esp, django_capture_on_commit_callbacks):
    mailing = send("mg", django_capture_on_commit_callbacks)
    esp.fail_next(status=500, path="/v3/mg.example.com/events", times=10)
    results.request_refresh(mailing)
    mailing.refresh_from_db()
    assert "mg:" in mailing.refresh_note and "500" in mailing.refresh_note
    assert results.summary(mailing).counts == {Status.QUEUED: 7}  # Mailgun's "queued"


# ---- a batch interrupted while Mailgun held it (issue 17.6) ----------------------------


def _interrupted_batch(esp, capture, monkeypatch, accepted: int):
    """Queue the mailing, then play a worker that died in the middle of handing the
    first batch (3 members) to Mailgun, after Mailgun accepted ``accepted`` of them."""
    from datetime import timedelta

    from django.core.cache import cache
    from django.utils import timezone

    from wagtail_maillog.models import OutboxItem, Recipient, SendAttempt

    cache.set(worker.WAKE_KEY, 1, timeout=300)  # no worker takes the mail meanwhile
    mailing = Mailing.objects.create(
        subject="News for {{ name }}",
        body="<p>Hi {{ name }}</p>",
        from_email="news@mg.example.com",
        audience="members",
        connector="mg",
    )
    with capture(execute=True):
        sending.send(mailing)
    item = OutboxItem.objects.order_by("pk").first()
    assert worker.claim(1, "the-dead-worker")[0].pk == item.pk
    SendAttempt.objects.create(message_id=item.message_id, outcome="started", connector="mg")
    members = sorted(
        Recipient.objects.filter(message_id=item.message_id).values_list("address", flat=True)
    )
    assert len(members) == 3
    esp_id = "<20261206.LOSTANSWER@mg.example.com>"
    for address in members[:accepted]:
        event = esp.add_mailgun_event(esp_id, "accepted", address, timestamp=time.time())
        event["message"]["headers"]["from"] = "Club <news@mg.example.com>"
    later = timezone.now() + timedelta(seconds=301)  # the dead worker's lease ran out
    monkeypatch.setattr(worker, "clock", lambda: later)
    return mailing, item, members, esp_id


def test_mailgun_says_what_it_took_and_only_the_rest_is_sent_again(
    esp, django_capture_on_commit_callbacks, monkeypatch
):
    from wagtail_maillog.models import OutboxItem, Recipient, SendAttempt

    mailing, item, members, esp_id = _interrupted_batch(
        esp, django_capture_on_commit_callbacks, monkeypatch, accepted=2
    )
    before = len(esp.sent)
    assert "interrupted 1" in worker.process_outbox(time_budget=20)
    calls = esp.sent[before:]
    again = [c for c in calls if members[2] in c.recipients]
    assert [c.recipients for c in again] == [[members[2]]]  # not the two Mailgun took
    assert not any(m in c.recipients for c in calls for m in members[:2])
    rows = {r.address: r for r in Recipient.objects.filter(message_id=item.message_id)}
    for address in members[:2]:
        assert rows[address].esp_message_id == esp_id
        assert rows[address].status == Status.SENT
        assert "event log" in rows[address].reason
    assert rows[members[2]].esp_message_id not in ("", esp_id)
    assert not OutboxItem.objects.filter(pk=item.pk).exists()
    outcomes = list(
        SendAttempt.objects.filter(message_id=item.message_id)
        .order_by("pk")
        .values_list("outcome", flat=True)
    )
    # The hand-over found in Mailgun's log is an attempt of its own, then the rest's.
    assert outcomes == ["interrupted", "sent", "sent"]
    found = SendAttempt.objects.filter(message_id=item.message_id, outcome="sent").first()
    assert set(found.response) == set(members[:2]) and "event log" in found.error
    assert sending.recipients_of(mailing).filter(status=Status.UNKNOWN).count() == 0
    # So the deliverability figures count every member the ESP took as sent, once.
    rollup.catch_up()
    rollup.catch_up()
    # The worker's clock runs 301 s ahead: near midnight, its hand-overs are tomorrow's.
    today = timezone.localdate()
    taken = Recipient.objects.filter(message__connector="mg").exclude(esp_message_id="")
    assert taken.filter(message_id=item.message_id).count() == 3
    period = figures.Period(today, today + timedelta(days=1))
    assert figures.totals(period).sent == taken.count()


def test_when_mailgun_took_the_whole_batch_nothing_is_sent_again(
    esp, django_capture_on_commit_callbacks, monkeypatch
):
    from wagtail_maillog.models import OutboxItem, Recipient

    _mailing, item, members, esp_id = _interrupted_batch(
        esp, django_capture_on_commit_callbacks, monkeypatch, accepted=3
    )
    before = len(esp.sent)
    worker.process_outbox(time_budget=20)
    assert not any(m in c.recipients for c in esp.sent[before:] for m in members)
    assert set(
        Recipient.objects.filter(message_id=item.message_id).values_list(
            "esp_message_id", flat=True
        )
    ) == {esp_id}
    assert not OutboxItem.objects.filter(pk=item.pk).exists()


def test_when_mailgun_cannot_be_asked_the_batch_waits_for_a_person(
    esp, django_capture_on_commit_callbacks, monkeypatch
):
    from wagtail_maillog.models import OutboxItem, Recipient

    _mailing, item, members, _esp_id = _interrupted_batch(
        esp, django_capture_on_commit_callbacks, monkeypatch, accepted=1
    )
    esp.fail_next(500, path="/v3/mg.example.com/events", times=50)
    before = len(esp.sent)
    worker.process_outbox(time_budget=20)
    assert not any(m in c.recipients for c in esp.sent[before:] for m in members)
    held = OutboxItem.objects.get(pk=item.pk)
    assert (held.state, held.auto_retry) == ("failed", False)
    assert set(
        Recipient.objects.filter(message_id=item.message_id).values_list("status", flat=True)
    ) == {Status.UNKNOWN}


def test_the_rest_of_a_partly_taken_batch_survives_a_failed_attempt(
    esp, django_capture_on_commit_callbacks, monkeypatch
):
    """Mailgun took two of the batch before its worker died; the hand-over of the third
    then fails once. The two stay handed over and the retry hands over the third only
    (before, the retry took the whole message for sent and dropped it)."""
    from wagtail_maillog.models import OutboxItem, Recipient

    _mailing, item, members, esp_id = _interrupted_batch(
        esp, django_capture_on_commit_callbacks, monkeypatch, accepted=2
    )
    esp.fail_next(503, path="/v3/mg.example.com/messages", times=1)
    before = len(esp.sent)
    worker.process_outbox(time_budget=20)

    def rows():
        found = Recipient.objects.filter(message_id=item.message_id)
        return {r.address: (r.status, r.esp_message_id) for r in found}

    assert [rows()[a] for a in members[:2]] == [(Status.SENT, esp_id)] * 2
    assert rows()[members[2]][0] == Status.PENDING
    assert OutboxItem.objects.get(pk=item.pk).state == "retry_pending"

    later = worker.clock() + timedelta(hours=1)
    monkeypatch.setattr(worker, "clock", lambda: later)
    worker.process_outbox(time_budget=20)
    calls = [c.recipients for c in esp.sent[before:] if set(c.recipients) & set(members)]
    assert calls == [[members[2]]]  # the third, once (the 503 was not sent)
    assert [rows()[a] for a in members[:2]] == [(Status.SENT, esp_id)] * 2
    status, third_id = rows()[members[2]]
    assert status == Status.QUEUED and third_id not in ("", esp_id)  # Mailgun: "queued"
    assert not OutboxItem.objects.filter(pk=item.pk).exists()
