"""A mailing sent by a real django-q2 cluster on Redis, against a shared database.

Runs in the PostgreSQL pass (see tests/test_outbox_workers.py for why).
"""

from __future__ import annotations

import os
import signal

import pytest

from tests.esp import ScriptedBackend
from tests.processes import stop_process_group
from tests.test_outbox_workers import python, redis_cluster, wait_until
from tests.testapp.models import Member
from tests.utils import needs_shared_database
from wagtail_maillog.addresses.health import set_status
from wagtail_maillog.mailings import results, sending
from wagtail_maillog.models import AddressStatus, Mailing, MailingState, OutboxItem
from wagtail_maillog.status import Status

pytestmark = [pytest.mark.django_db(transaction=True), needs_shared_database]


@pytest.fixture(autouse=True)
def outbox(settings):
    settings.WAGTAIL_MAILLOG = {
        "CONNECTORS": {
            "default": {
                "BACKEND": "tests.esp.ScriptedBackend",
                "MAILING": {"BATCH_SIZE": 4, "MERGE_FIELD": "{{{{{}}}}}"},
            }
        },
    }
    ScriptedBackend.script = []


def test_a_mailing_goes_out_through_a_django_q2_cluster(tmp_path, monkeypatch):
    pytest.importorskip("redis")
    for i in range(10):
        Member.objects.create(name=f"Member {i}", email=f"m{i}@example.com")
    Member.objects.create(name="Bounced", email="gone@example.com")
    set_status([(f"m{i}@example.com", AddressStatus.CONFIRMED, "t") for i in range(10)])
    set_status([("gone@example.com", AddressStatus.BOUNCED, "t")])
    mailing = Mailing.objects.create(
        subject="News {{ name }}", body="<p>Hi {{ name }}</p>", audience="members"
    )
    # The "send" of the admin, minus the in-process task start: the cluster does the work.
    monkeypatch.setattr(sending, "_start_task", lambda pk: None)
    sending.send(mailing)

    marker = tmp_path / "esp-calls.txt"
    cluster, env = redis_cluster(marker, delay="0.01")
    try:
        start = python(
            f"from django_q.tasks import async_task; async_task('{sending.TASK}', {mailing.pk})",
            **env,
        )
        assert start.wait(timeout=60) == 0, start.stdout.read()

        def done() -> bool:
            rows = sending.recipients_of(mailing)
            return rows.count() == 10 and not rows.exclude(status=Status.SENT).exists()

        finished = wait_until(done, timeout=90)
    finally:
        log = stop_process_group(cluster)
    assert finished, log[-3000:]
    mailing.refresh_from_db()
    assert mailing.state == MailingState.QUEUED
    assert mailing.queued_count == 10
    assert mailing.skipped == {AddressStatus.BOUNCED: 1}
    calls = marker.read_text().splitlines()
    assert len(calls) == 3, calls  # 10 recipients in batches of 4: three ESP calls
    assert set(calls) == {"News {{name}}"}
    assert not OutboxItem.objects.exists()
    assert results.summary(mailing).percent == 100


def test_a_batch_interrupted_by_a_sigkilled_cluster_is_held_not_sent_twice(
    tmp_path, monkeypatch, admin_client
):
    """Issue 17.6: the cluster is killed while the ESP holds a batch of 4 members. After
    the lease the batch is not handed over again blindly: it waits, its members
    "unknown", for a person to retry or drop it; the other batches go; the counts stay
    exact when the queuing task runs again."""
    from datetime import timedelta

    from django.utils import timezone

    from tests.test_outbox_workers import with_no_wake
    from wagtail_maillog.models import Recipient, SendAttempt
    from wagtail_maillog.outbox import worker

    for i in range(10):
        Member.objects.create(name=f"Member {i}", email=f"m{i}@example.com")
    set_status([(f"m{i}@example.com", AddressStatus.CONFIRMED, "t") for i in range(10)])
    mailing = Mailing.objects.create(
        subject="News {{ name }}", body="<p>Hi {{ name }}</p>", audience="members"
    )
    monkeypatch.setattr(sending, "_start_task", lambda pk: None)
    sending.send(mailing)
    with_no_wake(lambda: sending.queue_mailing(mailing.pk))
    assert OutboxItem.objects.count() == 3  # 4 + 4 + 2 members

    # A real django-q2 cluster takes the outbox, and is SIGKILLed while the ESP holds
    # its first batch (the ESP waits 60 s before answering).
    pytest.importorskip("redis")
    marker = tmp_path / "esp-calls.txt"
    cluster, env = redis_cluster(marker, delay="60")
    try:
        start = python(
            "from django_q.tasks import async_task; "
            "async_task('wagtail_maillog.outbox.worker.process_outbox')",
            **env,
        )
        assert start.wait(timeout=60) == 0, start.stdout.read()
        assert wait_until(lambda: marker.exists() and marker.read_text(), timeout=90)
    finally:
        os.killpg(cluster.pid, signal.SIGKILL)  # the whole cluster, mid-call
        cluster.communicate(timeout=30)
    held = OutboxItem.objects.get(attempts=1, state="sending", message__attempts__outcome="started")

    later = timezone.now() + timedelta(seconds=301)
    monkeypatch.setattr(worker, "clock", lambda: later)
    ScriptedBackend.calls = []
    assert "interrupted 1" in worker.process_outbox(time_budget=10)

    assert ScriptedBackend.calls == ["News {{name}}", "News {{name}}"]  # the two others only
    held.refresh_from_db()
    assert (held.state, held.auto_retry, held.next_attempt_at) == ("failed", False, None)
    assert "may have sent it" in held.last_error
    members = Recipient.objects.filter(message_id=held.message_id)
    assert members.count() == 4
    assert set(members.values_list("status", flat=True)) == {Status.UNKNOWN}
    assert SendAttempt.objects.get(message_id=held.message_id).outcome == "interrupted"
    counts = results.summary(mailing).counts
    assert (counts.get(Status.SENT), counts.get(Status.UNKNOWN)) == (6, 4)
    # The mailing's page names the batch, with the outbox's Send again and Drop.
    from django.urls import reverse

    page = admin_client.get(reverse("wagtail_maillog_mailings:overview", args=[mailing.pk]))
    html = page.content.decode()
    assert f'data-held-item="{held.pk}"' in html
    assert reverse("wagtail_maillog_outbox:retry", args=[held.pk]) in html
    assert reverse("wagtail_maillog_outbox:cancel", args=[held.pk]) in html

    # The schedule restarts the queuing task: nobody is queued twice, the counts stay.
    Mailing.objects.filter(pk=mailing.pk).update(state=MailingState.QUEUING)
    with_no_wake(lambda: sending.queue_mailing(mailing.pk))
    mailing.refresh_from_db()
    assert (mailing.member_count, mailing.queued_count, mailing.skipped) == (10, 10, {})
    assert sending.recipients_of(mailing).count() == 10

    # A person decides: Retry hands the batch over again, once.
    assert worker.retry_now(OutboxItem.objects.filter(pk=held.pk)) == 1
    worker.process_outbox(time_budget=10)
    assert ScriptedBackend.calls[2:] == ["News {{name}}"]
    assert set(members.values_list("status", flat=True)) == {Status.SENT}
    assert marker.read_text().splitlines() == ["News {{name}}"]
