"""Send throughput: one django-q2 cluster with 2 workers draining the outbox.

    python -m benchmarks.send_throughput [--quick]

Queues 10,000 messages (300 with --quick) through the OutboxBackend without
waking a worker, starts a real cluster (``python -m django qcluster``: ORM
broker on SQLite, Redis with PostgreSQL and MariaDB), waits until its workers answer,
then hands each worker one outbox run and times until the outbox is empty.
The connector is the sandbox ESP (``wagtail_maillog.sandbox.SandboxBackend``)
with ``SANDBOX_EVENT_DELAY = None``: no network, no simulated events, so the
figure is our side of sending: claim, attempt, ESP call, recording, cleanup.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid

from .harness import ROOT, Figure, database, figure, log, main

# The cluster and this process share these settings (benchmarks/settings.py).
os.environ["MAILLOG_BENCH_OUTBOX"] = "1"
os.environ.setdefault("MAILLOG_Q_NAME", f"maillog-bench-{uuid.uuid4().hex[:8]}")
if database() in ("postgres", "mysql"):
    os.environ["MAILLOG_Q_BROKER"] = "redis"

MEASURE = "send throughput"
TASK = "wagtail_maillog.outbox.worker.process_outbox"
WORKERS = 2


def queue(count: int) -> None:
    """``count`` one-recipient messages in the outbox, no worker woken."""
    from django.core.mail import EmailMessage, get_connection

    from wagtail_maillog.outbox import worker

    wake, worker.wake = worker.wake, lambda: None
    try:
        connection = get_connection()
        for start in range(0, count, 500):
            connection.send_messages(
                [
                    EmailMessage(
                        f"Order {i} shipped",
                        "Your order is on its way.\n" * 20,
                        "shop@example.com",
                        [f"customer{i}@example.com"],
                    )
                    for i in range(start, min(start + 500, count))
                ]
            )
    finally:
        worker.wake = wake


def start_cluster() -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "django", "qcluster"],
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def stop_cluster(cluster: subprocess.Popen[str]) -> None:
    """Ask the cluster to stop; its workers are idle by now, so a short wait is enough."""
    if cluster.poll() is None:
        cluster.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            cluster.wait(timeout=15)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(cluster.pid, signal.SIGKILL)  # whatever is left of its process group
    cluster.wait()


def wait_until_ready(cluster: subprocess.Popen[str], timeout: float = 120) -> None:
    """One trivial task per worker, answered: the workers are up and connected."""
    from django_q.tasks import async_task, result

    tasks = [async_task("math.floor", 1.5) for _ in range(WORKERS)]
    deadline = time.monotonic() + timeout
    for task in tasks:
        while result(task) is None:
            if cluster.poll() is not None:
                raise RuntimeError(f"qcluster exited: {cluster.stderr.read()[-2000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError("the cluster did not answer")
            time.sleep(0.1)


def drain(cluster: subprocess.Popen[str], count: int, timeout: float) -> float:
    """Seconds from handing out the runs until the outbox is empty."""
    from django_q.tasks import async_task

    from wagtail_maillog.models import OutboxItem

    start = time.perf_counter()
    for _ in range(WORKERS):
        async_task(TASK, time_budget=timeout)
    while OutboxItem.objects.exists():
        if cluster.poll() is not None:
            raise RuntimeError(f"qcluster exited: {cluster.stderr.read()[-2000:]}")
        if time.perf_counter() - start > timeout:
            left = OutboxItem.objects.count()
            raise TimeoutError(f"{left} of {count} still in the outbox after {timeout} s")
        time.sleep(0.05)
    return time.perf_counter() - start


def commit_rate(commits: int = 200) -> float:
    """Committed one-row UPDATEs per second: the database's floor for a worker that
    commits several times per message (each commit waits for the disk)."""
    from django_q.models import Schedule

    row = Schedule.objects.create(func="math.floor", name="commit probe")
    start = time.perf_counter()
    for n in range(commits):
        Schedule.objects.filter(pk=row.pk).update(repeats=n)
    seconds = time.perf_counter() - start
    row.delete()
    return commits / seconds


def measure(count: int) -> list[Figure]:
    from django_q.models import Schedule

    from wagtail_maillog.models import SendAttempt

    started = time.perf_counter()
    queue(count)
    log(f"queued {count:,} messages in {time.perf_counter() - started:.1f} s")
    Schedule.objects.all().delete()  # only our runs: no purge, no every-minute run
    cluster = start_cluster()
    try:
        wait_until_ready(cluster)
        seconds = drain(cluster, count, timeout=max(300, count / 5))
    finally:
        stop_cluster(cluster)
    sent = SendAttempt.objects.filter(outcome=SendAttempt.Outcome.SENT).count()
    assert sent == count, (sent, count)
    log(f"sent {count:,} in {seconds:.1f} s: {count / seconds:,.0f} messages/s")
    commits = commit_rate()
    return [
        figure(MEASURE, "messages sent", count, note=f"{WORKERS} workers, sandbox ESP"),
        figure(MEASURE, "messages/s", count / seconds, "messages/s"),
        figure(MEASURE, "time to drain", seconds, "s"),
        figure(MEASURE, "commit floor: one-row UPDATEs/s", commits, "commits/s"),
    ]


def run(quick: bool) -> list[Figure]:
    return measure(300 if quick else 10_000)


if __name__ == "__main__":
    main(run, __doc__)
