"""Real workers against a real database: racing processes, a django-q2 cluster on
Redis, a worker killed mid-send, and two clusters sharing a backlog.

These need a database that several processes share, so they run in the
PostgreSQL pass of scripts/test (the in-memory SQLite of the SQLite pass is
private to one process).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.mail import EmailMessage
from django.db import connection
from django.utils import timezone

from tests.esp import ScriptedBackend
from tests.processes import stop_process_group
from tests.utils import needs_shared_database
from wagtail_maillog.models import OutboxItem, Recipient, SendAttempt
from wagtail_maillog.outbox import worker
from wagtail_maillog.status import Status

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.django_db(transaction=True), needs_shared_database]


@pytest.fixture(autouse=True)
def outbox(settings):
    settings.EMAIL_BACKEND = "wagtail_maillog.outbox.backend.OutboxBackend"
    settings.WAGTAIL_MAILLOG = {
        "CONNECTORS": {"default": {"BACKEND": "tests.esp.ScriptedBackend"}},
        "LEASE_SECONDS": 300,
        "OUTBOX_BATCH": 5,
    }
    ScriptedBackend.script = []
    ScriptedBackend.calls = []


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="tests.settings",
        PYTHONPATH=str(ROOT),
        MAILLOG_TEST_OUTBOX="1",
        MAILLOG_PG_NAME=connection.settings_dict["NAME"],
        MAILLOG_MYSQL_NAME=connection.settings_dict["NAME"],
        **extra,
    )
    return env


def python(code: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", "import django; django.setup(); " + code],
        env=child_env(**env),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def queue(count: int, prefix: str) -> None:
    for i in range(count):
        EmailMessage(f"{prefix} {i}", "Body", "s@example.com", [f"r{i}@example.com"]).send()
    # the in-process wake-up ran nothing: no transaction commit hooks fire here
    assert OutboxItem.objects.count() == count


def wait_until(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def test_two_worker_processes_racing_send_each_mail_once(tmp_path, settings):
    settings.Q_CLUSTER = {**settings.Q_CLUSTER}
    OutboxItem.objects.all().delete()
    marker = tmp_path / "esp-calls.txt"
    with_no_wake(lambda: queue(40, "Race"))
    procs = [
        python(
            "from wagtail_maillog.outbox.worker import process_outbox; "
            "print(process_outbox(time_budget=60))",
            MAILLOG_TEST_ESP_DELAY="0.02",
            MAILLOG_TEST_ESP_MARKER=str(marker),
        )
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    calls = marker.read_text().splitlines()
    assert sorted(calls) == sorted(f"Race {i}" for i in range(40))  # each exactly once
    assert not OutboxItem.objects.exists()
    assert SendAttempt.objects.filter(outcome="sent").count() == 40
    assert Recipient.objects.filter(status=Status.SENT).count() == 40
    assert sum(int(o.split("sent ")[1].split(",")[0]) for o in outputs) == 40


def with_no_wake(fn):
    """Queue without asking the (in-process) cluster: the child workers do the sending."""
    original = worker.wake
    worker.wake = lambda: None
    try:
        fn()
    finally:
        worker.wake = original


def redis_cluster(marker: Path, delay: str) -> tuple[subprocess.Popen, dict[str, str]]:
    """A real django-q2 cluster on Redis, in its own process group (its queue name
    unique to the test), whose ESP writes each subject to ``marker`` and waits
    ``delay`` seconds; and the environment that sends tasks to it."""
    env = {"MAILLOG_Q_BROKER": "redis", "MAILLOG_Q_NAME": f"maillog-test-{uuid.uuid4().hex[:8]}"}
    cluster = subprocess.Popen(
        [sys.executable, "-m", "django", "qcluster"],
        env=child_env(MAILLOG_TEST_ESP_MARKER=str(marker), MAILLOG_TEST_ESP_DELAY=delay, **env),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    return cluster, env


def test_a_django_q2_cluster_on_redis_drains_the_outbox(tmp_path):
    pytest.importorskip("redis")
    marker = tmp_path / "esp-calls.txt"
    with_no_wake(lambda: queue(20, "Cluster"))
    cluster, env = redis_cluster(marker, delay="0.01")
    try:
        # Two wake-ups, as two web requests would send: two workers race.
        for _ in range(2):
            enqueue = python(
                "from django_q.tasks import async_task; "
                "async_task('wagtail_maillog.outbox.worker.process_outbox')",
                **env,
            )
            assert enqueue.wait(timeout=60) == 0, enqueue.stdout.read()
        drained = wait_until(lambda: not OutboxItem.objects.exists(), timeout=90)
    finally:
        log = stop_process_group(cluster)
    assert drained, log[-3000:]
    calls = marker.read_text().splitlines()
    assert sorted(calls) == sorted(f"Cluster {i}" for i in range(20)), log[-3000:]
    assert SendAttempt.objects.filter(outcome="sent").count() == 20


def kill_mid_send(marker: Path) -> None:
    """Run a worker in its own process and SIGKILL it while the ESP holds its first
    call (the fake ESP waits 60 s after writing the subject to ``marker``)."""
    doomed = python(
        "from wagtail_maillog.outbox.worker import process_outbox; process_outbox()",
        MAILLOG_TEST_ESP_DELAY="60",
        MAILLOG_TEST_ESP_MARKER=str(marker),
    )
    try:
        assert wait_until(lambda: marker.exists() and marker.read_text(), timeout=60)
        doomed.send_signal(signal.SIGKILL)  # in the middle of the ESP call
        doomed.wait(timeout=30)
    finally:
        if doomed.poll() is None:
            doomed.kill()


def test_a_worker_killed_mid_send_is_recovered_without_silent_double_send(tmp_path, monkeypatch):
    marker = tmp_path / "esp-calls.txt"
    with_no_wake(lambda: queue(1, "Killed"))
    kill_mid_send(marker)
    item = OutboxItem.objects.get()
    assert item.state == "sending" and item.attempts == 1
    assert SendAttempt.objects.get().outcome == "started"

    # Before the lease runs out nobody touches it; after, the next worker does.
    assert "sent 0" in worker.process_outbox(time_budget=5)
    later = timezone.now() + timedelta(seconds=301)
    monkeypatch.setattr(worker, "clock", lambda: later)
    assert "interrupted 1" in worker.process_outbox(time_budget=5)

    assert not OutboxItem.objects.exists()
    assert list(SendAttempt.objects.order_by("pk").values_list("outcome", flat=True)) == [
        "interrupted",
        "sent",
    ]
    assert Recipient.objects.get().status == Status.SENT
    assert ScriptedBackend.calls == ["Killed 0"]  # the ESP saw it twice; both are on record
    assert marker.read_text().splitlines() == ["Killed 0"]


# ---- a backlog: every worker of every cluster joins in -----------------------------------


def start_cluster(env: dict[str, str], log: Path) -> subprocess.Popen:
    """A django-q2 cluster in its own process group, its log (and django-q2's own INFO
    lines: "Q Cluster ... running.") in ``log``."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "django", "qcluster"],
            env=child_env(**env),
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def most_at_once(spans: list[tuple[object, object]]) -> int:
    """The most of these (start, stop) spans that were open at the same moment."""
    edges = sorted([(start, 1) for start, _stop in spans] + [(stop, -1) for _start, stop in spans])
    most = now = 0
    for _at, step in edges:
        now += step
        most = max(most, now)
    return most


def sent_by_runs() -> int:
    """Mail sent by the outbox runs whose results django-q2 stored as successful."""
    from django_q.models import Task

    runs = Task.objects.filter(func=worker.TASK, success=True)
    return sum(int(t.result.split()[1].rstrip(",")) for t in runs)


def test_a_backlog_keeps_the_workers_of_two_clusters_busy(tmp_path):
    """Issue 20: 60 mails, one wake-up, an ESP that takes 0.3 s a call, and two clusters
    of two workers sharing one Redis queue. A run that claims a full batch asks for one
    more run, so the runs spread to the idle workers of both clusters instead of one
    worker draining the backlog alone; each mail still leaves exactly once."""
    pytest.importorskip("redis")
    from django_q.models import Schedule, Task

    Schedule.objects.all().delete()  # only the runs this test starts
    marker = tmp_path / "esp-calls.txt"
    with_no_wake(lambda: queue(60, "Backlog"))
    env = {
        "MAILLOG_Q_BROKER": "redis",
        "MAILLOG_Q_NAME": f"maillog-test-{uuid.uuid4().hex[:8]}",
        "MAILLOG_TEST_ESP_MARKER": str(marker),
        "MAILLOG_TEST_ESP_DELAY": "0.3",
    }
    logs = [tmp_path / "cluster-a.log", tmp_path / "cluster-b.log"]
    clusters = [start_cluster(env, log) for log in logs]
    try:
        assert wait_until(
            lambda: all(log.exists() and "running." in log.read_text() for log in logs),
            timeout=90,
        ), [log.read_text()[-2000:] for log in logs if log.exists()]
        wake_once = python(
            "from django_q.tasks import async_task; "
            "async_task('wagtail_maillog.outbox.worker.process_outbox')",
            **env,
        )
        assert wake_once.wait(timeout=60) == 0, wake_once.stdout.read()
        drained = wait_until(lambda: not OutboxItem.objects.exists(), timeout=120)
        # Each cluster's monitor stores a run's result after the run: wait for them
        # before stopping the clusters (a result not stored by then may be lost).
        wait_until(lambda: sent_by_runs() == 60, timeout=60)
    finally:
        for cluster in clusters:
            stop_process_group(cluster)
    assert drained, [log.read_text()[-3000:] for log in logs]
    calls = marker.read_text().splitlines()
    assert sorted(calls) == sorted(f"Backlog {i}" for i in range(60))  # each exactly once
    assert SendAttempt.objects.filter(outcome="sent").count() == 60

    runs = Task.objects.filter(func=worker.TASK, success=True)
    sending = [(t.started, t.stopped) for t in runs if not t.result.startswith("sent 0,")]
    assert sent_by_runs() == 60, [(t.started, t.stopped, t.result) for t in runs]
    # More runs sent mail at one moment than one cluster has workers: both clusters took part.
    assert most_at_once(sending) >= 3, [(t.started, t.stopped, t.result) for t in runs]
