"""The outbox: queue, hand-over, retry schedule, max attempts, cancel, connectors."""

from __future__ import annotations

import time
from datetime import timedelta

import django
import pytest
from anymail.exceptions import AnymailAPIError
from django.core import mail
from django.core.cache import cache
from django.core.mail import EmailMessage, send_mail
from django.utils import timezone

from tests.esp import ScriptedBackend
from wagtail_maillog import label, mail_context
from wagtail_maillog.addresses.health import clear_problem, set_status
from wagtail_maillog.models import (
    Address,
    AddressStatus,
    ConnectorState,
    Message,
    OutboxItem,
    Recipient,
    SendAttempt,
)
from wagtail_maillog.models import SendState as S
from wagtail_maillog.outbox import connectors, worker
from wagtail_maillog.status import Status

pytestmark = pytest.mark.django_db

OUTBOX = "wagtail_maillog.outbox.backend.OutboxBackend"


class Clock:
    """An injected clock for the worker, moved by hand."""

    def __init__(self) -> None:
        self.now = timezone.now() + timedelta(seconds=1)  # mail queued "now" is due

    def __call__(self):
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(worker, "clock", c)
    return c


@pytest.fixture(autouse=True)
def outbox(settings):
    settings.EMAIL_BACKEND = OUTBOX
    settings.WAGTAIL_MAILLOG = {
        "CONNECTORS": {
            "default": {"BACKEND": "tests.esp.ScriptedBackend"},
            "smtp": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"},
            "off": {"BACKEND": "tests.esp.ScriptedBackend", "ENABLED": False},
        },
        "RETRY_SCHEDULE": [60, 300, 1800],
        "MAX_ATTEMPTS": 3,
    }
    ScriptedBackend.script = []
    ScriptedBackend.calls = []
    return settings


def api_error(status: int = 503, retry_after: str | None = None) -> AnymailAPIError:
    class Response:
        status_code = status
        headers = {"Retry-After": retry_after} if retry_after else {}
        text = "ESP says no"
        reason = "ESP says no"

        def json(self):
            return {}

    return AnymailAPIError("ESP says no", status_code=status, response=Response())


def send(subject: str = "Hello", to: str = "ann@example.com", **labels) -> OutboxItem:
    msg = EmailMessage(subject, "Body", "site@example.com", [to])
    if labels:
        label(msg, **labels)
    msg.send()
    return OutboxItem.objects.get(message__subject=subject)


def run() -> str:
    return worker.process_outbox(time_budget=10)


def test_sending_queues_and_the_worker_hands_over(clock):
    item = send()
    assert item.state == S.QUEUED and ScriptedBackend.calls == []
    assert Recipient.objects.get().status == Status.PENDING

    assert "sent 1" in run()
    assert ScriptedBackend.calls == ["Hello"]
    assert not OutboxItem.objects.exists()  # the payload is gone with the row
    recipient = Recipient.objects.get()
    assert recipient.status == Status.SENT and recipient.esp_message_id == "0"
    attempt = SendAttempt.objects.get()
    assert attempt.outcome == "sent" and attempt.connector == "default"
    assert Message.objects.get().connector == "default"


def test_retry_schedule_then_success(clock):
    ScriptedBackend.script = [api_error(500), api_error(503), None]
    item = send()
    run()
    item.refresh_from_db()
    assert item.state == S.RETRY_PENDING and item.attempts == 1
    assert item.next_attempt_at == clock.now + timedelta(seconds=60)
    assert item.first_failure_at == clock.now
    assert "ESP says no" in item.last_error
    registered = item.first_failure_at

    clock.advance(59)
    run()
    assert len(ScriptedBackend.calls) == 1  # not due yet

    clock.advance(2)
    run()
    item.refresh_from_db()
    assert item.attempts == 2 and item.next_attempt_at == clock.now + timedelta(seconds=300)
    assert item.first_failure_at == registered
    assert Recipient.objects.get().status == Status.PENDING

    clock.advance(301)
    run()
    assert not OutboxItem.objects.exists()
    assert list(SendAttempt.objects.values_list("outcome", flat=True)) == [
        "failed",
        "failed",
        "sent",
    ]
    assert Recipient.objects.get().status == Status.SENT


def test_max_attempts_then_only_a_manual_retry(clock):
    ScriptedBackend.script = [api_error(), api_error(), api_error()]
    item = send()
    for wait in (0, 61, 301):
        clock.advance(wait)
        run()
    item.refresh_from_db()
    assert item.state == S.FAILED and item.attempts == 3 and item.next_attempt_at is None
    assert Recipient.objects.get().status == Status.FAILED
    clock.advance(100_000)
    run()
    assert len(ScriptedBackend.calls) == 3

    assert worker.retry_now([item]) == 1
    item.refresh_from_db()
    assert item.state == S.RETRY_PENDING
    assert Recipient.objects.get().status == Status.PENDING
    run()
    assert not OutboxItem.objects.exists()
    assert len(ScriptedBackend.calls) == 4


def test_permanent_errors_fail_at_once(clock):
    ScriptedBackend.script = [api_error(400)]
    item = send()
    run()
    item.refresh_from_db()
    assert item.state == S.FAILED and item.attempts == 1


def test_retry_after_is_respected(clock):
    ScriptedBackend.script = [api_error(429, retry_after="900")]
    item = send()
    run()
    item.refresh_from_db()
    assert item.state == S.RETRY_PENDING
    assert item.next_attempt_at == clock.now + timedelta(seconds=900)


def test_cancel_while_waiting_but_not_while_sending(clock, settings):
    settings.WAGTAIL_MAILLOG["UNDO_SEND_SECONDS"] = 30
    item = send()
    assert item.next_attempt_at > timezone.now()
    assert worker.cancel([item]) == 1
    assert not OutboxItem.objects.exists()
    assert Recipient.objects.get().status == Status.CANCELLED
    assert SendAttempt.objects.get().outcome == "cancelled"
    clock.advance(60)
    run()
    assert ScriptedBackend.calls == []

    other = send("Second")
    OutboxItem.objects.filter(pk=other.pk).update(state=S.SENDING)
    assert worker.cancel([other]) == 0
    assert OutboxItem.objects.filter(pk=other.pk).exists()


def test_undo_send_delay_holds_the_mail(clock, settings):
    settings.WAGTAIL_MAILLOG["UNDO_SEND_SECONDS"] = 30
    send()
    run()
    assert ScriptedBackend.calls == []
    clock.advance(31)
    run()
    assert ScriptedBackend.calls == ["Hello"]


def test_scheduled_send(clock):
    at = clock.now + timedelta(hours=2)
    item = send(send_at=at)
    assert item.state == S.SCHEDULED and item.next_attempt_at == at
    clock.advance(3600)
    run()
    assert ScriptedBackend.calls == []
    clock.advance(3601)
    run()
    assert ScriptedBackend.calls == ["Hello"]


def test_connector_disabled_in_settings_waits(clock):
    item = send(connector="off")
    assert item.state == S.CONNECTOR_DISABLED
    run()
    assert ScriptedBackend.calls == []


def test_connector_switched_off_and_on_in_the_admin(clock):
    item = send()
    connectors.set_enabled("default", False)
    item.refresh_from_db()
    assert item.state == S.CONNECTOR_DISABLED
    run()
    assert ScriptedBackend.calls == []
    assert ConnectorState.objects.get(name="default").enabled is False

    connectors.set_enabled("default", True)
    item.refresh_from_db()
    assert item.state == S.QUEUED
    run()
    assert ScriptedBackend.calls == ["Hello"]


def test_a_plain_django_backend_works_too(clock):
    send(connector="smtp")
    run()
    assert [m.subject for m in mail.outbox] == ["Hello"]
    assert Recipient.objects.get().status == Status.SENT
    assert SendAttempt.objects.get().outcome == "sent"


def test_a_tampered_payload_is_refused_not_loaded(clock):
    item = send()
    OutboxItem.objects.filter(pk=item.pk).update(payload=b"cos\nsystem\n(S'echo pwned'\ntR.")
    run()
    item.refresh_from_db()
    assert item.state == S.FAILED and "signature" in item.last_error
    assert ScriptedBackend.calls == []


def test_attachments_travel_with_the_payload_and_are_gone_after(clock):
    msg = EmailMessage("Invoice", "b", "s@example.com", ["p@example.com"])
    msg.attach("invoice.pdf", b"%PDF-1.4", "application/pdf")
    msg.send()
    assert b"%PDF-1.4" in bytes(OutboxItem.objects.get().payload)
    run()
    assert mail.outbox[0].attachments[0][0] == "invoice.pdf"
    assert not OutboxItem.objects.exists()
    assert Message.objects.get().attachment_names == ["invoice.pdf"]


def test_an_abandoned_lease_is_taken_over_and_the_attempt_marked(clock):
    """A worker that died mid-send: its attempt says so, and the mail still leaves once."""
    item = send()
    claimed = worker.claim(10, owner="dead-worker")
    assert [i.pk for i in claimed] == [item.pk]
    SendAttempt.objects.create(message=item.message, outcome="started", connector="default")

    run()  # the lease still holds: nobody else may send it
    assert ScriptedBackend.calls == []

    clock.advance(301)
    assert "interrupted 1" in run()
    assert ScriptedBackend.calls == ["Hello"]
    assert list(SendAttempt.objects.values_list("outcome", flat=True)) == ["interrupted", "sent"]


def test_two_claims_never_share_a_message(clock):
    for i in range(10):
        send(f"Mail {i}")
    first = worker.claim(6, owner="a")
    second = worker.claim(6, owner="b")
    assert len(first) == 6 and len(second) == 4
    assert not {i.pk for i in first} & {i.pk for i in second}


def test_sending_through_django_q_in_the_request(settings, django_capture_on_commit_callbacks):
    """With the in-process cluster (sync), a send is handed over when the transaction commits."""
    worker.forget_wake()
    with django_capture_on_commit_callbacks(execute=True):
        send_mail("Now", "b", "s@example.com", ["x@example.com"])
    assert ScriptedBackend.calls == ["Now"]
    assert not OutboxItem.objects.exists()


def test_switching_a_connector_off_and_on_keeps_scheduled_times(clock):
    at = clock.now + timedelta(hours=8)
    item = send(send_at=at)
    connectors.set_enabled("default", False)
    connectors.set_enabled("default", True)
    item.refresh_from_db()
    assert item.state == S.SCHEDULED and item.next_attempt_at == at
    run()
    assert ScriptedBackend.calls == []


def test_a_message_the_esp_already_accepted_is_not_sent_again(clock):
    """The worker died after the ESP answered but before the item was cleared."""
    item = send()
    worker.claim(10, owner="dead-worker")
    SendAttempt.objects.create(message=item.message, outcome="sent", connector="default")
    clock.advance(301)
    assert "sent 1" in run()
    assert ScriptedBackend.calls == []
    assert not OutboxItem.objects.exists()


def test_refused_recipients_are_final_not_retried(clock):
    from anymail.message import AnymailRecipientStatus

    msg = EmailMessage("Refused", "b", "s@example.com", ["bad@example.com"])
    msg.anymail_test_response = {
        "recipient_status": {"bad@example.com": AnymailRecipientStatus("id-1", "rejected")}
    }
    msg.send()
    assert "failed 1" in run()
    assert not OutboxItem.objects.exists()
    assert Recipient.objects.get().status == Status.REJECTED
    assert SendAttempt.objects.get().outcome == "sent"  # the ESP's answer, kept


def test_the_sandbox_being_down_is_retried_with_its_retry_after(clock, settings):
    settings.WAGTAIL_MAILLOG["CONNECTORS"]["default"] = {
        "BACKEND": "wagtail_maillog.sandbox.SandboxBackend"
    }
    item = send(to="x@unreachable.example")
    run()
    item.refresh_from_db()
    assert item.state == S.RETRY_PENDING and "503" in item.last_error
    assert item.next_attempt_at == clock.now + timedelta(seconds=60)


def test_sends_soon_after_this_process_asked_for_a_run_do_not_ask_the_cache(monkeypatch):
    """Until the wake-up's key runs out (two seconds), a send asks neither django-q2 nor
    the cache (a round trip each on a shared cache); then the next one asks both."""
    asked, tasks = [], []

    class Counting:
        def add(self, key, *args, **kwargs):
            asked.append(key)
            return cache.add(key, *args, **kwargs)

        def delete(self, key):
            cache.delete(key)

    monkeypatch.setattr(worker, "cache", Counting())
    monkeypatch.setattr(worker, "async_task", lambda *args, **kwargs: tasks.append(args))
    for _ in range(3):
        worker.wake()
    assert (asked, len(tasks)) == ([worker.WAKE_KEY], 1)
    cache.delete(worker.WAKE_KEY)  # two seconds later: the key ran out
    monkeypatch.setattr(worker, "_asked_at", time.monotonic() - worker.WAKE_SECONDS)
    worker.wake()
    assert (asked, len(tasks)) == ([worker.WAKE_KEY] * 2, 2)


def test_a_broker_outage_does_not_fail_the_send(settings, monkeypatch):
    def broken(*args, **kwargs):
        raise ConnectionError("broker down")

    monkeypatch.setattr("django_q.tasks.async_task", broken)
    worker.forget_wake()
    worker.wake()  # logs a warning, raises nothing
    send("Still queued")
    assert OutboxItem.objects.filter(message__subject="Still queued").exists()


@pytest.mark.skipif(django.VERSION < (6, 1), reason="MAILERS is new in Django 6.1")
def test_the_outbox_works_as_a_django_61_mailer(settings):
    """get_connection() refuses to run once MAILERS is set; the worker must not need it."""
    from django.core.mail import mailers

    del settings.EMAIL_BACKEND
    settings.MAILERS = {"default": {"BACKEND": "wagtail_maillog.outbox.backend.OutboxBackend"}}
    settings.WAGTAIL_MAILLOG = {"CONNECTORS": {"default": {"BACKEND": "tests.esp.ScriptedBackend"}}}
    mailers.__init__()  # the handler caches its settings
    try:
        EmailMessage("Mailer", "Body", "s@example.com", ["r@example.com"]).send()
        assert OutboxItem.objects.count() == 1
        worker.process_outbox(time_budget=5)
        assert Recipient.objects.get().status == Status.SENT
    finally:
        del settings.MAILERS
        mailers.__init__()


def test_a_send_cancelled_by_another_apps_pre_send_is_not_left_sending(settings):
    from anymail.exceptions import AnymailCancelSend
    from anymail.signals import pre_send

    settings.EMAIL_BACKEND = "wagtail_maillog.outbox.backend.OutboxBackend"
    settings.WAGTAIL_MAILLOG = {"CONNECTORS": {"default": {"BACKEND": "tests.esp.ScriptedBackend"}}}

    def veto(sender, message, **kwargs):
        raise AnymailCancelSend("not today")

    pre_send.connect(veto, dispatch_uid="test-veto")
    try:
        EmailMessage("Vetoed", "Body", "s@example.com", ["r@example.com"]).send()
        assert "blocked 1" in worker.process_outbox(time_budget=5)
    finally:
        pre_send.disconnect(dispatch_uid="test-veto")
    recipient = Recipient.objects.get()
    assert recipient.status == Status.CANCELLED
    assert "pre_send" in recipient.reason
    assert not OutboxItem.objects.exists()


def test_mail_for_an_unknown_connector_records_the_one_it_goes_through(settings):
    settings.EMAIL_BACKEND = "wagtail_maillog.outbox.backend.OutboxBackend"
    settings.WAGTAIL_MAILLOG = {"CONNECTORS": {"default": {"BACKEND": "tests.esp.ScriptedBackend"}}}
    message = EmailMessage("Typo", "Body", "s@example.com", ["r@example.com"])
    label(message, connector="newsleter")
    message.send()
    assert Message.objects.get().connector == "default"
    assert OutboxItem.objects.get().connector == "default"


def test_suppression_is_decided_again_at_each_attempt(clock):
    """A recipient blocked on the first attempt, whose address an admin then clears, gets
    the retry and is recorded as sent, not left "blocked" with a false reason."""
    set_status([("b@example.com", AddressStatus.BOUNCED, "test")])
    ScriptedBackend.script = [api_error(503), None]
    EmailMessage("Hi", "Body", "site@example.com", ["a@example.com", "b@example.com"]).send()
    run()
    assert Recipient.objects.get(address="b@example.com").status == Status.BLOCKED

    clear_problem(Address.objects.filter(address="b@example.com"))
    clock.advance(120)
    run()
    assert mail.outbox[-1].to == ["a@example.com", "b@example.com"]
    rows = {r.address: (r.status, r.reason) for r in Recipient.objects.all()}
    assert rows == {"a@example.com": (Status.SENT, ""), "b@example.com": (Status.SENT, "")}


def test_a_problem_address_stays_blocked_on_the_retry(clock):
    set_status([("b@example.com", AddressStatus.BOUNCED, "test")])
    ScriptedBackend.script = [api_error(503), None]
    EmailMessage("Hi", "Body", "site@example.com", ["a@example.com", "b@example.com"]).send()
    run()
    clock.advance(120)
    run()
    assert mail.outbox[-1].to == ["a@example.com"]
    assert Recipient.objects.get(address="b@example.com").status == Status.BLOCKED


def test_mail_context_suppress_false_holds_through_the_outbox(clock):
    """The worker sends long after the block ended: the context's word travels with the
    queued message (docs/addresses.md, "Mail that must always go")."""
    set_status([("ann@example.com", AddressStatus.BOUNCED, "test")])
    with mail_context(suppress=False):
        EmailMessage("Receipt", "Body", "site@example.com", ["ann@example.com"]).send()
    EmailMessage("News", "Body", "site@example.com", ["ann@example.com"]).send()
    run()
    assert ScriptedBackend.calls == ["Receipt"]
    statuses = dict(Recipient.objects.values_list("message__subject", "status"))
    assert statuses == {"Receipt": Status.SENT, "News": Status.BLOCKED}


def test_a_retry_that_goes_clears_the_reason_of_the_failed_attempt(clock):
    ScriptedBackend.script = [api_error(503), None]
    send()
    run()
    assert Recipient.objects.get().status == Status.PENDING
    assert "503" in Recipient.objects.get().reason
    clock.advance(120)
    run()
    assert Recipient.objects.values_list("status", "reason").get() == (Status.SENT, "")
