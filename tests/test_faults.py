"""Faults on the ESP's side, through the outbox and anymail's real Postmark and Mailgun
backends, over real sockets into a loopback fake of their APIs (tests/fake_esp.py).

Each fault is checked for what the outbox promises (docs/outbox.md, "Automatic
retry"): every attempt recorded with its outcome and error, the retry schedule
followed (``next_attempt_at``), the recipients' statuses, and how often the ESP
was called: never again once it took the mail.

The worker's clock is stepped by hand (``worker.clock``), as in tests/test_outbox.py.
A worker killed with SIGKILL during the hand-over is tested in
tests/test_outbox_workers.py (real processes, PostgreSQL pass); the database
going away during a webhook in tests/test_hostile_webhooks.py.
"""

from __future__ import annotations

import socket
from datetime import timedelta
from email.utils import format_datetime
from typing import TYPE_CHECKING

import pytest
from django.core.mail import EmailMessage
from django.db import OperationalError
from django.utils import timezone

from wagtail_maillog import label, recording
from wagtail_maillog.models import Address, AddressStatus, OutboxItem, Recipient, SendAttempt
from wagtail_maillog.models import SendState as S
from wagtail_maillog.outbox import worker
from wagtail_maillog.status import Status

if TYPE_CHECKING:
    from tests.fake_esp import FakeESP

pytest_plugins = ["tests.fake_esp"]
pytestmark = pytest.mark.django_db

OUTBOX = "wagtail_maillog.outbox.backend.OutboxBackend"
POSTMARK = "anymail.backends.postmark.EmailBackend"
MAILGUN = "anymail.backends.mailgun.EmailBackend"
#: The waits after attempt 1, 2, 3, ...: the last one repeats.
SCHEDULE = [60, 300]
MAX_ATTEMPTS = 4
SEND_PATHS = {"pm": "/email", "mg": "/v3/mg.example.com/messages"}


class Clock:
    """The worker's clock, moved by hand."""

    def __init__(self) -> None:
        self.now = timezone.now() + timedelta(seconds=1)  # mail queued "now" is due

    def __call__(self):
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock(monkeypatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(worker, "clock", c)
    return c


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (connections are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def connectors(fake: FakeESP, down_port: int) -> dict:
    return {
        "pm": {
            "BACKEND": POSTMARK,
            "OPTIONS": {"server_token": "pm-token", "api_url": fake.postmark_api_url},
        },
        "mg": {
            "BACKEND": MAILGUN,
            "OPTIONS": {"api_key": "mg-key", "api_url": fake.mailgun_api_url},
        },
        "down": {
            "BACKEND": POSTMARK,
            "OPTIONS": {"server_token": "pm-token", "api_url": f"http://127.0.0.1:{down_port}/"},
        },
    }


@pytest.fixture
def esp(fake_esp: FakeESP, settings) -> FakeESP:
    settings.EMAIL_BACKEND = OUTBOX
    settings.WAGTAIL_MAILLOG = {
        "CONNECTORS": connectors(fake_esp, closed_port()),
        "DEFAULT_CONNECTOR": "pm",
        "RETRY_SCHEDULE": SCHEDULE,
        "MAX_ATTEMPTS": MAX_ATTEMPTS,
    }
    return fake_esp


def send(connector: str = "pm", to: tuple[str, ...] = ("ann@example.com",), **extra) -> OutboxItem:
    msg = EmailMessage("Club news", "Body", "News <news@mg.example.com>", list(to))
    for name, value in extra.items():
        setattr(msg, name, value)
    label(msg, connector=connector)
    msg.send()
    return OutboxItem.objects.get(message_id=msg._maillog_pk)


def run() -> str:
    return worker.process_outbox(time_budget=10)


def attempts() -> list[tuple[str, str]]:
    return list(SendAttempt.objects.order_by("pk").values_list("outcome", "error"))


def outcomes() -> list[str]:
    return [outcome for outcome, _error in attempts()]


def statuses() -> dict[str, str]:
    return dict(Recipient.objects.values_list("address", "status"))


def calls(fake: FakeESP, connector: str = "pm") -> int:
    """How often the ESP's send API was called (accepted or not)."""
    return len(fake.requests_to(SEND_PATHS[connector], method="POST"))


def assert_waiting(item: OutboxItem, clock: Clock, attempt: int, wait: float) -> None:
    item.refresh_from_db()
    assert item.state == S.RETRY_PENDING
    assert item.attempts == attempt
    assert item.next_attempt_at == clock.now + timedelta(seconds=wait)
    assert set(statuses().values()) == {Status.PENDING}


# ---- network faults -------------------------------------------------------------


def test_connection_refused_is_retried_on_schedule_until_the_esp_is_back(esp, clock, settings):
    item = send("down")
    assert "retrying 1" in run()
    assert_waiting(item, clock, attempt=1, wait=60)
    ((outcome, error),) = attempts()
    assert outcome == "failed"
    assert "Error posting to http://127.0.0.1:" in error and "Connection refused" in error
    assert "Connection refused" in Recipient.objects.get().reason  # the reason shows the error
    assert "Connection refused" in OutboxItem.objects.get().last_error
    registered = OutboxItem.objects.get().first_failure_at

    clock.advance(59)
    assert "sent 0, retrying 0" in run()  # not due yet
    clock.advance(1)
    run()
    assert_waiting(item, clock, attempt=2, wait=300)
    assert OutboxItem.objects.get().first_failure_at == registered

    # The ESP is reachable again (here: the connector now points at it).
    settings.WAGTAIL_MAILLOG["CONNECTORS"]["down"] = settings.WAGTAIL_MAILLOG["CONNECTORS"]["pm"]
    clock.advance(300)
    assert "sent 1" in run()
    assert outcomes() == ["failed", "failed", "sent"]
    assert not OutboxItem.objects.exists()
    assert statuses() == {"ann@example.com": Status.SENT}
    assert len(esp.sent) == 1 and calls(esp) == 1  # the refused ones never reached it

    clock.advance(100_000)
    run()
    assert calls(esp) == 1  # no second send after success


def test_a_timeout_is_retried_and_the_next_attempt_sends(esp, clock, settings):
    settings.ANYMAIL = {**settings.ANYMAIL, "REQUESTS_TIMEOUT": 0.3}
    esp.fail_next(status=200, path="/email", delay=2)  # answers long after the timeout
    item = send()
    assert "retrying 1" in run()
    assert_waiting(item, clock, attempt=1, wait=60)
    ((outcome, error),) = attempts()
    assert outcome == "failed" and "ReadTimeout" in error and "read timeout=0.3" in error

    clock.advance(60)
    assert "sent 1" in run()
    assert outcomes() == ["failed", "sent"]
    assert statuses() == {"ann@example.com": Status.SENT}
    # The ESP saw two calls and accepted one. (A real ESP may have accepted the
    # timed-out call too: the log shows it as "failed", then "handed over".)
    assert calls(esp) == 2 and len(esp.sent) == 1
    clock.advance(100_000)
    run()
    assert calls(esp) == 2


# ---- HTTP errors ------------------------------------------------------------------


@pytest.mark.parametrize("connector", ["pm", "mg"])
def test_5xx_follows_the_schedule_then_fails_and_only_a_manual_retry_sends(esp, clock, connector):
    esp.fail_next(status=503, path=SEND_PATHS[connector], times=MAX_ATTEMPTS)
    item = send(connector)
    run()
    assert_waiting(item, clock, attempt=1, wait=60)
    waited = 60
    for attempt, wait in ((2, 300), (3, 300)):  # the last value of the schedule repeats
        clock.advance(waited - 1)
        run()
        assert calls(esp, connector) == attempt - 1  # never before it is due
        clock.advance(1)
        run()
        assert_waiting(item, clock, attempt, wait)
        waited = wait
    clock.advance(waited)
    assert "failed 1" in run()

    item.refresh_from_db()
    assert item.state == S.FAILED and item.attempts == MAX_ATTEMPTS
    assert item.next_attempt_at is None and not item.auto_retry
    assert outcomes() == ["failed"] * MAX_ATTEMPTS
    assert all("503" in error and "Fake ESP: HTTP 503" in error for _o, error in attempts())
    recipient = Recipient.objects.get()
    assert recipient.status == Status.FAILED and "503" in recipient.reason
    assert calls(esp, connector) == MAX_ATTEMPTS

    clock.advance(10 * 86_400)  # failed waits for a person, however long
    assert "sent 0, retrying 0, failed 0" in run()
    assert calls(esp, connector) == MAX_ATTEMPTS

    assert worker.retry_now([item]) == 1
    assert Recipient.objects.get().status == Status.PENDING
    assert "sent 1" in run()
    assert outcomes() == ["failed"] * MAX_ATTEMPTS + ["sent"]
    assert Recipient.objects.get().status in (Status.SENT, Status.QUEUED)  # Mailgun: "queued"
    assert Recipient.objects.get().esp_message_id
    assert calls(esp, connector) == MAX_ATTEMPTS + 1 and len(esp.sent) == 1
    clock.advance(100_000)
    run()
    assert calls(esp, connector) == MAX_ATTEMPTS + 1


@pytest.mark.parametrize("connector", ["pm", "mg"])
def test_429_retry_after_in_seconds_is_honoured(esp, clock, connector):
    esp.fail_next(status=429, retry_after=900, path=SEND_PATHS[connector])
    item = send(connector)
    run()
    assert_waiting(item, clock, attempt=1, wait=900)  # not the schedule's 60
    assert "429" in attempts()[0][1]

    clock.advance(899)
    run()
    assert calls(esp, connector) == 1
    clock.advance(1)
    assert "sent 1" in run()
    assert outcomes() == ["failed", "sent"] and calls(esp, connector) == 2


def test_429_retry_after_as_an_http_date_is_honoured(esp, clock):
    esp.fail_next(
        status=429, retry_after=format_datetime(timezone.now() + timedelta(seconds=1200), True)
    )
    item = send()
    run()
    item.refresh_from_db()
    wait = (item.next_attempt_at - clock.now).total_seconds()
    assert 1190 <= wait <= 1200  # the date has whole seconds; the test takes some time


def test_a_retry_after_shorter_than_the_schedule_does_not_hurry_it(esp, clock):
    esp.fail_next(status=429, retry_after=5)
    item = send()
    run()
    assert_waiting(item, clock, attempt=1, wait=60)  # "at least that long"


def test_a_4xx_that_no_retry_can_fix_fails_at_once(esp, clock):
    esp.postmark_token = "the-right-token"  # the connector's "pm-token" is refused: HTTP 401
    item = send()
    assert "failed 1" in run()
    item.refresh_from_db()
    assert item.state == S.FAILED and item.attempts == 1 and item.next_attempt_at is None
    ((outcome, error),) = attempts()
    assert outcome == "failed" and "401" in error and "Bad or missing Server API token" in error
    assert statuses() == {"ann@example.com": Status.FAILED}
    clock.advance(100_000)
    run()
    assert calls(esp) == 1


# ---- the ESP refuses some recipients -----------------------------------------------


def test_postmark_refuses_one_recipient_the_others_get_it(
    esp, clock, django_capture_on_commit_callbacks
):
    esp.postmark_inactive = {"bob@example.com"}
    send(to=("ann@example.com", "bob@example.com"))
    with django_capture_on_commit_callbacks(execute=True):  # address health moves on commit
        assert "sent 1" in run()

    assert not OutboxItem.objects.exists()  # the ESP answered: nothing to retry
    assert statuses() == {"ann@example.com": Status.SENT, "bob@example.com": Status.REJECTED}
    bob = Recipient.objects.get(address="bob@example.com")
    assert "refused this recipient" in bob.reason and bob.esp_message_id == ""
    (attempt,) = SendAttempt.objects.all()
    assert attempt.outcome == "sent"
    assert attempt.response["bob@example.com"] == {"message_id": None, "status": "rejected"}
    assert attempt.response["ann@example.com"]["status"] == "sent"
    assert Address.objects.get(address="bob@example.com").status == AddressStatus.BLOCKED
    assert [s.recipients for s in esp.sent] == [["ann@example.com"]]

    clock.advance(100_000)
    run()
    assert calls(esp) == 1


def test_postmark_batch_with_one_refused_entry(esp, clock, django_capture_on_commit_callbacks):
    esp.postmark_inactive = {"bob@example.com"}
    to = ("ann@example.com", "bob@example.com", "cy@example.com")
    # Per-recipient metadata makes anymail use Postmark's batch API: one message each.
    send(to=to, merge_metadata={a: {"member": a} for a in to})
    with django_capture_on_commit_callbacks(execute=True):
        assert "sent 1" in run()

    assert [r.path for r in esp.requests] == ["/email/batch"]
    assert statuses() == {
        "ann@example.com": Status.SENT,
        "bob@example.com": Status.REJECTED,
        "cy@example.com": Status.SENT,
    }
    ids = dict(Recipient.objects.values_list("address", "esp_message_id"))
    assert ids["bob@example.com"] == "" and ids["ann@example.com"] != ids["cy@example.com"]
    assert outcomes() == ["sent"]
    assert Address.objects.get(address="bob@example.com").status == AddressStatus.BLOCKED
    assert sorted(a for s in esp.sent for a in s.recipients) == [
        "ann@example.com",
        "cy@example.com",
    ]
    clock.advance(100_000)
    run()
    assert len(esp.requests) == 1


def test_every_recipient_refused_leaves_the_outbox_without_retry(
    esp, clock, django_capture_on_commit_callbacks
):
    esp.postmark_inactive = {"bob@example.com"}
    send(to=("bob@example.com",))
    with django_capture_on_commit_callbacks(execute=True):
        assert "failed 1" in run()  # Postmark's HTTP 422, ErrorCode 406

    assert not OutboxItem.objects.exists()  # "the ESP answered and refused every recipient"
    assert statuses() == {"bob@example.com": Status.REJECTED}
    ((outcome, error),) = attempts()
    assert outcome == "sent"  # handed over, and answered
    assert error.startswith("AnymailRecipientsRefused")
    assert Address.objects.get(address="bob@example.com").status == AddressStatus.BLOCKED
    assert esp.sent == []
    clock.advance(100_000)
    run()
    assert calls(esp) == 1


# ---- the database goes away during the hand-over -------------------------------------


def lose_the_database(monkeypatch, times: int | None) -> list[int]:
    """Storing the ESP's answer (anymail's post_send) fails ``times`` times (None: always)."""
    real = recording.update_fields
    failures: list[int] = []

    def flaky(*args, **kwargs):
        if times is None or len(failures) < times:
            failures.append(1)
            raise OperationalError("server closed the connection unexpectedly")
        return real(*args, **kwargs)

    monkeypatch.setattr(recording, "update_fields", flaky)
    monkeypatch.setattr(worker, "STORE_AGAIN_PAUSES", (0.0, 0.0, 0.0))
    return failures


def test_the_database_lost_after_the_esp_took_the_mail_is_no_reason_to_send_it_again(
    esp, clock, monkeypatch
):
    failures = lose_the_database(monkeypatch, times=1)
    send()
    assert "sent 1, retrying 0" in run()
    assert failures == [1]  # the first try to store it; the second got through

    assert not OutboxItem.objects.exists()
    (attempt,) = SendAttempt.objects.all()
    assert attempt.outcome == "sent"
    assert "OperationalError" in attempt.error  # the hiccup stays on record
    recipient = Recipient.objects.get()
    assert (
        recipient.status == Status.SENT and recipient.esp_message_id == esp.sent[0].message_ids[0]
    )
    clock.advance(100_000)
    run()
    assert calls(esp) == 1  # not a second time


def test_the_database_gone_for_longer_leaves_an_interrupted_hand_over_after_the_lease(
    esp, clock, monkeypatch
):
    failures = lose_the_database(monkeypatch, times=None)
    item = send()
    assert "sent 0, retrying 0, failed 0" in run()
    assert len(failures) == 4  # post_send, then three more tries to store the answer
    item.refresh_from_db()
    assert item.state == S.SENDING  # left to its lease, as if the worker had died
    assert outcomes() == ["started"]

    monkeypatch.undo()  # the database is back
    monkeypatch.setattr(worker, "clock", clock)
    clock.advance(299)
    assert "sent 0" in run()  # nobody touches it during the lease
    clock.advance(2)
    assert "interrupted 1" in run()
    assert outcomes() == ["interrupted", "sent"]
    assert "the ESP may have accepted" in attempts()[0][1]
    # Sent twice, and the log says so: never a silent double send.
    assert calls(esp) == 2
