"""The machinery of tests/test_load.py: a gunicorn server and a django-q2 cluster
in subprocesses, an ESP that notes every hand-over, SparkPost event batches, and
clients that post them as an ESP does (a 5xx is retried after a short wait).
"""

from __future__ import annotations

import json
import os
import random
import re
import statistics
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import requests
from anymail.backends.test import EmailBackend as AnymailTestBackend
from anymail.message import AnymailRecipientStatus

from tests.processes import stop_process_group

ROOT = Path(__file__).resolve().parent.parent
WEBHOOK = "/anymail/sparkpost/tracking/"
AUTH = ("hook", "secret")  # ANYMAIL["WEBHOOK_SECRET"] of tests/settings.py


# ---- the ESP of the mailing ---------------------------------------------------


def esp_id(address: str) -> str:
    """The ESP message id LoadESP gives ``address``: known in advance, so the
    clients can post events for mail that is still being sent."""
    return f"m-{address}"


class LoadESP(AnymailTestBackend):
    """anymail's test backend, slowed down by ``MAILLOG_LOAD_ESP_DELAY`` seconds a
    call, appending one line per call to ``MAILLOG_LOAD_ESP_MARKER``:
    ``<unix time>\\t<recipient>,<recipient>,...`` (the ESP's view of what it got)."""

    esp_name = "LoadESP"

    def post_to_esp(self, payload: Any, message: Any) -> Any:
        time.sleep(float(os.environ.get("MAILLOG_LOAD_ESP_DELAY", "0")))
        emails = list(payload.recipient_emails)
        marker = os.environ.get("MAILLOG_LOAD_ESP_MARKER")
        if marker:
            line = f"{time.time():.6f}\t{','.join(emails)}\n".encode()
            fd = os.open(marker, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line)  # one write with O_APPEND: lines of two workers never mix
            finally:
                os.close(fd)
        return {
            "recipient_status": {
                e: AnymailRecipientStatus(message_id=esp_id(e), status="sent") for e in emails
            }
        }


def read_marker(path: Path) -> list[tuple[float, list[str]]]:
    if not path.exists():
        return []
    calls = []
    for line in path.read_text().splitlines():
        at, emails = line.split("\t")
        calls.append((float(at), emails.split(",")))
    return calls


# ---- SparkPost events -----------------------------------------------------------

#: (SparkPost type, extra fields, weight): what an ESP reports about a sent mail.
#: Includes the history-only kinds (initial_open, bounce class 80 "subscribed"),
#: an auto-reply (bounce class 60, counts as delivered) and every failure.
KINDS: list[tuple[str, dict[str, str], float]] = [
    ("injection", {}, 1),
    ("delay", {"raw_reason": "451 4.2.0 Mailbox busy, try later"}, 1),
    ("delivery", {}, 3),
    ("open", {"user_agent": "Mozilla/5.0 Mail"}, 3),
    ("initial_open", {"user_agent": "Mozilla/5.0 Mail"}, 0.5),
    ("click", {"target_link_url": "https://example.com/news", "user_agent": "Mail"}, 2),
    ("bounce", {"bounce_class": "10", "raw_reason": "550 5.1.1 User unknown"}, 0.3),
    ("bounce", {"bounce_class": "21", "raw_reason": "550 5.4.4 DNS failure"}, 0.3),
    ("bounce", {"bounce_class": "60", "raw_reason": "Out of office"}, 0.2),
    ("bounce", {"bounce_class": "80", "raw_reason": "Subscribe"}, 0.2),
    ("out_of_band", {"bounce_class": "25", "raw_reason": "554 Policy"}, 0.2),
    ("policy_rejection", {"bounce_class": "50", "raw_reason": "554 Blocked"}, 0.2),
    ("generation_failure", {}, 0.1),
    ("spam_complaint", {}, 0.2),
    ("list_unsubscribe", {}, 0.2),
]


def sparkpost_event(
    kind: str, extra: dict[str, str], event_id: str, tx: str, address: str, at: datetime
) -> dict[str, Any]:
    return {
        "msys": {
            "message_event" if kind not in ("open", "click", "initial_open") else "track_event": {
                "type": kind,
                "event_id": event_id,
                "transmission_id": tx,
                "raw_rcpt_to": address,
                "rcpt_to": address,
                "timestamp": str(int(at.timestamp())),
                **extra,
            }
        }
    }


@dataclass
class Plan:
    """What the clients will post, and what must be stored afterwards."""

    batches: list[bytes]
    posted: int  # events in all batches, replays included
    known: set[str]  # event ids of events for the seeded recipients
    in_flight: set[str]  # event ids of events for mail the mailing is sending
    unknown: set[str]  # event ids of events for messages nobody sent
    replays: int


def plan_events(
    seed: int,
    recipients: list[tuple[str, str]],
    members: list[str],
    t0: datetime,
    per_recipient: int,
    unknown: int,
    replays: int,
    batch: int,
) -> Plan:
    """``per_recipient`` events for each (ESP id, address) in ``recipients``, one
    ``delivery`` for each mailing member (posted while the mailing is sent),
    ``unknown`` events for messages that do not exist, ``replays`` exact copies of
    events already in the plan, shuffled into POSTs of ``batch`` events."""
    rng = random.Random(seed)
    weights = [w for _k, _e, w in KINDS]
    events: list[dict[str, Any]] = []
    known, in_flight, ghosts = set(), set(), set()
    for n, (tx, address) in enumerate(recipients):
        at = t0
        for k in range(per_recipient):
            kind, extra, _w = rng.choices(KINDS, weights)[0]
            if k == 0 or rng.random() > 0.15:  # else: the same second as the one before (a tie)
                at = t0 + timedelta(seconds=rng.randint(1, 900))
            event_id = f"ev-{n}-{k}"
            events.append(sparkpost_event(kind, extra, event_id, tx, address, at))
            known.add(event_id)
    for address in members:
        event_id = f"ev-m-{address}"
        delivered = t0 + timedelta(seconds=1000)
        events.append(
            sparkpost_event("delivery", {}, event_id, esp_id(address), address, delivered)
        )
        in_flight.add(event_id)
    for n in range(unknown):
        event_id = f"ev-ghost-{n}"
        at = t0 + timedelta(seconds=n % 900)
        events.append(
            sparkpost_event("delivery", {}, event_id, f"tx-ghost-{n}", f"ghost{n}@example.org", at)
        )
        ghosts.add(event_id)
    events.extend(rng.sample(events, replays))
    rng.shuffle(events)
    bodies = [json.dumps(events[i : i + batch]).encode() for i in range(0, len(events), batch)]
    return Plan(bodies, len(events), known, in_flight, ghosts, replays)


# ---- the ESP's side: clients that post and retry ----------------------------------


@dataclass
class Outcome:
    """What the clients saw. Latencies are per attempt, in seconds."""

    latencies: list[float] = field(default_factory=list)
    codes: dict[int, int] = field(default_factory=dict)  # status -> attempts
    final: list[int] = field(default_factory=list)  # the last status of each batch
    retries: int = 0
    errors: list[str] = field(default_factory=list)  # connection errors (retried too)
    unfinished: int = 0  # batches given up at the deadline
    seconds: float = 0.0

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] if ordered else 0.0

    @property
    def median(self) -> float:
        return statistics.median(self.latencies) if self.latencies else 0.0


def post_all(
    url: str, bodies: list[bytes], clients: int, deadline: float, retry_wait: float = 0.2
) -> Outcome:
    """``clients`` threads take batches from a shared list and POST each until it
    gets an answer below 500 (an ESP retries a 5xx later; here after ``retry_wait``)."""
    outcome = Outcome()
    lock = threading.Lock()
    todo = list(enumerate(bodies))
    todo.reverse()

    def client() -> None:
        session = requests.Session()
        session.auth = AUTH
        headers = {"Content-Type": "application/json"}
        while True:
            with lock:
                if not todo:
                    return
                _n, body = todo.pop()
            attempt = 0
            while True:
                attempt += 1
                start = time.perf_counter()
                try:
                    code = session.post(url, data=body, headers=headers, timeout=60).status_code
                except requests.RequestException as exc:
                    code = 0
                    with lock:
                        outcome.errors.append(f"{type(exc).__name__}: {exc}")
                elapsed = time.perf_counter() - start
                with lock:
                    outcome.latencies.append(elapsed)
                    outcome.codes[code] = outcome.codes.get(code, 0) + 1
                if 0 < code < 500:
                    break
                if time.monotonic() > deadline:
                    with lock:
                        outcome.unfinished += 1
                    break
                with lock:
                    outcome.retries += 1
                time.sleep(retry_wait * min(attempt, 5))
            with lock:
                outcome.final.append(code)

    threads = [threading.Thread(target=client, name=f"esp-client-{i}") for i in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    outcome.seconds = time.perf_counter() - started
    return outcome


# ---- processes ------------------------------------------------------------------------


def child_env(database: dict[str, str], **extra: str) -> dict[str, str]:
    """The environment of a server or worker process: tests.settings on ``database``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILLOG_SQLITE")}
    env.update(
        DJANGO_SETTINGS_MODULE="tests.settings",
        PYTHONPATH=str(ROOT),
        MAILLOG_LOG_STDERR="1",
        **database,
        **extra,
    )
    return env


@dataclass
class Process:
    popen: subprocess.Popen
    log: Path

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def stop(self, timeout: float = 20) -> None:
        stop_process_group(self.popen, timeout)


def spawn(args: list[str], env: dict[str, str], log: Path) -> Process:
    with open(log, "ab") as out:
        popen = subprocess.Popen(
            args, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    return Process(popen, log)


def gunicorn_args(workers: int, threads: int) -> list[str]:
    from gunicorn.config import KNOWN_SETTINGS

    args = [
        sys.executable,
        "-m",
        "gunicorn",
        "django.core.wsgi:get_wsgi_application()",
        "--bind=127.0.0.1:0",  # a free port; the log says which
        f"--workers={workers}",
        "--worker-class=gthread",
        f"--threads={threads}",
        "--timeout=60",
        "--graceful-timeout=10",
        "--log-level=info",
    ]
    if any(s.name == "control_socket_disable" for s in KNOWN_SETTINGS):
        args.append("--no-control-socket")  # gunicorn >= 24 opens one in ~/.gunicorn
    return args


def start_server(env: dict[str, str], log: Path, workers: int = 3, threads: int = 4) -> Any:
    """gunicorn serving tests.urls on 127.0.0.1; returns (process, base URL) once it answers."""
    server = spawn(gunicorn_args(workers, threads), env, log)
    deadline = time.monotonic() + 60
    url = None
    while time.monotonic() < deadline and url is None:
        if server.popen.poll() is not None:
            raise RuntimeError(f"gunicorn exited:\n{server.tail()}")
        found = re.search(r"Listening at: (http://127\.0\.0\.1:\d+)", server.tail(100_000))
        url = found.group(1) if found else None
        time.sleep(0.1)
    if url is None:
        server.stop()
        raise RuntimeError(f"gunicorn did not start:\n{server.tail()}")
    # Every worker imports Django; a ping (a POST without data) answers 200 once one can.
    while time.monotonic() < deadline:
        try:
            if requests.post(url + WEBHOOK, data=b"[]", auth=AUTH, timeout=10).status_code == 200:
                booted = server.tail(100_000).count("Booting worker")
                if booted >= workers:
                    return server, url
        except requests.RequestException:
            pass
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"gunicorn did not answer:\n{server.tail()}")


def start_cluster(env: dict[str, str], log: Path) -> Process:
    return spawn([sys.executable, "-m", "django", "qcluster"], env, log)


def run_python(code: str, env: dict[str, str], timeout: float = 60) -> str:
    done = subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); " + code],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode:
        raise RuntimeError(done.stdout + done.stderr)
    return done.stdout


def wait_until(condition: Any, timeout: float, step: float = 0.25) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()


def unique_name() -> str:
    return f"maillog-load-{uuid.uuid4().hex[:8]}"
