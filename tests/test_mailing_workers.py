"""A mailing sent by a real django-q2 cluster on Redis, against a shared database.

Runs in the PostgreSQL pass (see tests/test_outbox_workers.py for why).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid

import pytest

from tests.esp import ScriptedBackend
from tests.test_outbox_workers import ROOT, child_env, python, wait_until
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

    name = f"maillog-test-{uuid.uuid4().hex[:8]}"
    env = {"MAILLOG_Q_BROKER": "redis", "MAILLOG_Q_NAME": name}
    marker = tmp_path / "esp-calls.txt"
    cluster = subprocess.Popen(
        [sys.executable, "-m", "django", "qcluster"],
        env=child_env(MAILLOG_TEST_ESP_MARKER=str(marker), MAILLOG_TEST_ESP_DELAY="0.01", **env),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
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
        os.killpg(cluster.pid, signal.SIGTERM)
        try:
            log = cluster.communicate(timeout=30)[0]
        except subprocess.TimeoutExpired:
            os.killpg(cluster.pid, signal.SIGKILL)
            log = cluster.communicate()[0]
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
