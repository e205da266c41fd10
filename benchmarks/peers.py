"""Side by side with the peers: the same mail and events through ours and theirs.

    python -m benchmarks.peers [--quick]

All in one run, on the same database (SQLite; PostgreSQL with ``--pg``), with
``benchmarks.peer_settings`` (one settings side per contender, so no app sees
another's signal receivers) and anymail's real Postmark backend talking to
the loopback fake Postmark API of tests/fake_esp.py, in a process of its own:

1. Outbox drain, 5,000 one-recipient mails (300 with --quick), with a 0 ms and
   a 50 ms ESP. Ours: queued through ``OutboxBackend`` (connector: the Postmark
   backend), drained by ``process_outbox`` in 1 and in 2 processes (plain
   processes, as django-q2 workers run it; closer to post_office's
   ``--processes`` than a cluster). Peers: django-post_office's
   ``send_queued_mail`` (1 and 2 processes), django-mailer's ``send_mail``, and
   plain anymail reusing one connection (the ceiling). msg/s, ratios, SQL
   statements and CPU ms per mail, peak RSS; then ours' worker RSS draining
   100,000 mails against 10,000 (1,000 and 100 with --quick).
2. Queueing: ``EmailMessage.send()`` through the outbox against post_office's
   ``mail.send()`` (and django-mailer's ``send_mail``), one mail per call, each
   side on a settled database (:func:`.harness.settle`).
3. One-event webhooks (Postmark's delivery shape, basic auth) through gunicorn,
   4 sync workers, 10 concurrent clients: ours, anymail-history's receiver and
   anymail with no receiver. Events/s, p50/p99 latency, queries per request.
4. The mail log's first page and status filter against post_office's admin
   changelist, each at 200,000 rows (5,000 with --quick).

Each child (:mod:`benchmarks.peers_run`) is a fresh process; see there for
what is counted and how. ``MAILLOG_PEERS_PARTS`` (comma-separated: drains,
webhooks, rss, pages) runs some of the parts only.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .harness import ROOT, Figure, analyze, figure, log, main, settle
from .peers_run import (
    AUTH,
    BODY,
    FROM,
    WEBHOOK,
    StatementCounter,
    address,
    postmark_delivery,
    subject,
)

os.environ["DJANGO_SETTINGS_MODULE"] = "benchmarks.peer_settings"
os.environ["MAILLOG_PEER_SIDE"] = "ours"
os.environ.setdefault("MAILLOG_PEER_LOCK", f"/tmp/maillog-peers-{os.getpid()}")
os.environ.setdefault("MAILLOG_Q_NAME", f"maillog-peers-{uuid.uuid4().hex[:8]}")

LATENCIES = (0.0, 0.05)
CLIENTS = 10
GUNICORN_WORKERS = 4
WARM_UP_EVENTS = 40
#: The counter of this (the main) process: queueing and the pages run here.
counter = StatementCounter()


@dataclass
class Sizes:
    drain: int
    rss_small: int
    rss_large: int
    events: int
    rows: int
    rounds: int  # of the webhooks, in turns


FULL = Sizes(drain=5_000, rss_small=10_000, rss_large=100_000, events=3_000, rows=200_000, rounds=3)
QUICK = Sizes(drain=300, rss_small=100, rss_large=1_000, events=300, rows=5_000, rounds=1)


def vendor() -> str:
    from django.db import connection

    return connection.vendor


def ratio(ours: float | None, theirs: float | None) -> float | None:
    return ours / theirs if ours is not None and theirs else None


# ---- child processes ------------------------------------------------------------


def child_env(side: str, **extra: str) -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT), MAILLOG_PEER_SIDE=side, **extra)


def migrate_peers() -> None:
    """The tables of django-mailer and anymail-history (the template has post_office's)."""
    subprocess.run(
        [sys.executable, "-m", "django", "migrate", "--verbosity", "0"],
        env=child_env("all"),
        cwd=ROOT,
        check=True,
    )


@contextlib.contextmanager
def fake_esp(latency: float) -> Iterator[dict[str, Any]]:
    """The fake Postmark API in its own process; after the block, ``accepted``."""
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.peers_run", "esp", "--latency", str(latency)],
        env=child_env("peers"),
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        info = json.loads(process.stdout.readline())
        yield info
    finally:
        process.stdin.close()
        line = process.stdout.readline()
        process.wait(timeout=30)
    info.update(json.loads(line))


def run_child(command: list[str], env: dict[str, str]) -> str:
    """A child's standard output; its standard error (post_office logs every batch at
    INFO) is shown only when it fails."""
    with tempfile.TemporaryFile("w+") as errors:
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.peers_run", *command],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        )
        if done.returncode:
            errors.seek(0)
            tail = errors.read()[-3000:]
            raise RuntimeError(f"peers_run {command} exited {done.returncode}: {tail}")
    return done.stdout


def run_drain(kind: str, processes: int, count: int, esp_url: str) -> dict[str, Any]:
    side = "ours" if kind == "ours" else "peers"
    out = run_child(
        [
            "drain",
            kind,
            "--processes",
            str(processes),
            "--count",
            str(count),
        ],
        child_env(side, MAILLOG_PEER_ESP_URL=esp_url),
    )
    return json.loads(out.strip().splitlines()[-1])


# ---- queueing (in this process) -------------------------------------------------


@dataclass
class Queued:
    count: int
    seconds: float
    statements: int
    commits: int

    @property
    def per_second(self) -> float:
        return self.count / self.seconds

    @property
    def per_mail(self) -> float:
        return self.statements / self.count


def _queued(kind: str, count: int) -> Queued:
    """``count`` mails queued one call each, the way each package's users send."""
    before, commits, start = counter.count, counter.commits, time.perf_counter()
    if kind == "ours":
        from django.core.mail import EmailMessage

        for i in range(count):
            EmailMessage(subject(i), BODY, FROM, [address(i)]).send()
    elif kind == "post_office":
        from post_office import mail

        for i in range(count):
            mail.send(recipients=[address(i)], sender=FROM, subject=subject(i), message=BODY)
    elif kind == "mailer":
        import mailer

        for i in range(count):
            mailer.send_mail(subject(i), BODY, FROM, [address(i)])
    seconds = time.perf_counter() - start
    return Queued(count, seconds, counter.count - before, counter.commits - commits)


def queue_ours_in_bulk(count: int) -> None:
    """Many mails fast (500 per ``send_messages``): the RSS runs' outbox."""
    from django.core.mail import EmailMessage, get_connection

    connection = get_connection()
    for start in range(0, count, 500):
        connection.send_messages(
            [
                EmailMessage(subject(i), BODY, FROM, [address(i)])
                for i in range(start, min(start + 500, count))
            ]
        )


def sent_so_far(kind: str) -> int:
    if kind == "ours":
        from wagtail_maillog.models import OutboxItem, SendAttempt

        assert not OutboxItem.objects.exists(), "the outbox is not empty"
        return SendAttempt.objects.filter(outcome=SendAttempt.Outcome.SENT).count()
    if kind == "post_office":
        from post_office.models import STATUS, Email

        assert not Email.objects.filter(status=STATUS.queued).exists(), "post_office: left"
        return Email.objects.filter(status=STATUS.sent).count()
    if kind == "mailer":
        from mailer.models import Message, MessageLog

        assert not Message.objects.exists(), "django-mailer: mail left in its queue"
        return MessageLog.objects.filter(result="1").count()
    return 0


# ---- 1 and 2: the drains --------------------------------------------------------

CONTENDERS: list[tuple[str, int, str]] = [
    ("ours", 1, "ours, 1 process"),
    ("post_office", 1, "post_office send_queued, 1 process"),
    ("mailer", 1, "django-mailer send_mail, 1 process"),
    ("anymail", 1, "plain anymail, one connection"),
    ("ours", 2, "ours, 2 processes"),
    ("post_office", 2, "post_office send_queued, 2 processes"),
]


def drain_once(kind: str, processes: int, count: int, latency: float) -> dict[str, Any]:
    before = sent_so_far(kind)
    queued = None
    if kind != "anymail":
        # Each side queues on a settled database, as the webhooks' rounds do: not on
        # the old row versions the drain before it left (PostgreSQL here runs without
        # autovacuum) nor into the WAL it left to be checkpointed (SQLite).
        settle()
        queued = _queued(kind, count)
    if vendor() == "postgresql" and not os.environ.get("MAILLOG_PEERS_NO_ANALYZE"):
        # As autovacuum would within a minute of such a fill, for every contender. This
        # machine's PostgreSQL runs with autovacuum off: its tables never had statistics,
        # and the planner took the log's tables for empty (sequential scans growing with
        # the log, for each batch). MariaDB keeps its statistics itself; SQLite sites
        # never ANALYZE.
        analyze()
    with fake_esp(latency) as esp:
        result = run_drain(kind, processes, count, esp["url"])
    assert esp["accepted"] == count, (kind, esp)
    if kind != "anymail":
        assert sent_so_far(kind) - before == count, kind
    result["queued"] = queued
    result["keep_alive"] = esp.get("keep_alive")
    return result


def drains(size: int) -> tuple[list[Figure], dict[str, list[Queued]]]:
    figures: list[Figure] = []
    queueing: dict[str, list[Queued]] = {"ours": [], "post_office": [], "mailer": []}
    for latency in LATENCIES:
        measure = f"peers: drain, {latency * 1000:.0f} ms ESP"
        rates: dict[tuple[str, int], float] = {}
        runs: dict[tuple[str, int], dict[str, Any]] = {}
        for kind, processes, label in CONTENDERS:
            result = drain_once(kind, processes, size, latency)
            if result["queued"] is not None:
                queueing[kind].append(result["queued"])
            rate = size / result["seconds"]
            rates[kind, processes], runs[kind, processes] = rate, result
            statements, commits = result["statements"], result["commits"]
            per_mail = None if statements is None else statements / size
            cpu_ms = result["cpu_seconds"] * 1000 / size
            counted = (
                "statements not counted (a fork pool)"
                if statements is None
                else f"{per_mail:.2f} statements, {commits / size:.2f} commits/mail"
            )
            note = (
                f"{counted}, {cpu_ms:.1f} CPU ms/mail, peak RSS {result['peak_rss'] / 2**20:.0f} MB"
            )
            log(f"{measure}: {label}: {rate:,.0f} msg/s; {note}")
            figures.append(
                figure(
                    measure,
                    label,
                    rate,
                    "msg/s",
                    note=note,
                    extra={
                        "mails": size,
                        "seconds": round(result["seconds"], 2),
                        "statements_per_mail": per_mail,
                        "commits_per_mail": None if commits is None else commits / size,
                        "cpu_ms_per_mail": round(cpu_ms, 2),
                        "peak_rss": result["peak_rss"],
                        "keep_alive": result["keep_alive"],
                    },
                )
            )
        ceiling = "one connection, one call at a time"
        figures += [
            figure(
                measure,
                "ratio ours / post_office, 1 process",
                ratio(rates["ours", 1], rates["post_office", 1]),
                "×",
                at_least=1,
            ),
            figure(
                measure,
                "ratio ours / post_office, 2 processes",
                ratio(rates["ours", 2], rates["post_office", 2]),
                "×",
                at_least=1,
            ),
            figure(
                measure,
                "ratio ours / django-mailer, 1 process",
                ratio(rates["ours", 1], rates["mailer", 1]),
                "×",
            ),
            figure(
                measure,
                "ratio ours, 1 process / plain anymail",
                ratio(rates["ours", 1], rates["anymail", 1]),
                "×",
                at_least=0.7,
                note=f"the ceiling: {ceiling}",
            ),
        ]
        for kind, label in (
            ("ours", "ours"),
            ("post_office", "post_office"),
            ("mailer", "django-mailer"),
        ):
            run = runs[kind, 1]
            figures.append(
                figure(
                    measure,
                    f"statements per mail, {label}",
                    run["statements"] / size,
                    "statements",
                    at_most=5 if kind == "ours" else None,
                    note=f"1 process; {run['commits'] / size:.2f} commits/mail",
                )
            )
        for kind, label in (
            ("ours", "ours"),
            ("post_office", "post_office"),
            ("mailer", "django-mailer"),
            ("anymail", "plain anymail"),
        ):
            figures.append(
                figure(
                    measure,
                    f"CPU ms per mail, {label}",
                    runs[kind, 1]["cpu_seconds"] * 1000 / size,
                    "ms",
                    note="1 process, its children included",
                )
            )
    return figures, queueing


def queueing_figures(queueing: dict[str, list[Queued]]) -> list[Figure]:
    measure = "peers: queueing"

    def total(kind: str) -> Queued:
        runs = queueing[kind]
        return Queued(
            sum(r.count for r in runs),
            sum(r.seconds for r in runs),
            sum(r.statements for r in runs),
            sum(r.commits for r in runs),
        )

    ours, post_office, mailer = total("ours"), total("post_office"), total("mailer")
    log(
        f"queueing: ours {ours.per_second:,.0f}/s ({ours.per_mail:.1f} statements), "
        f"post_office {post_office.per_second:,.0f}/s ({post_office.per_mail:.1f}), "
        f"django-mailer {mailer.per_second:,.0f}/s ({mailer.per_mail:.1f})"
    )
    return [
        figure(measure, "ours, EmailMessage.send()", ours.per_second, "mails/s"),
        figure(measure, "post_office mail.send()", post_office.per_second, "mails/s"),
        figure(measure, "django-mailer send_mail()", mailer.per_second, "mails/s"),
        figure(
            measure,
            "ratio ours / post_office",
            ratio(ours.per_second, post_office.per_second),
            "×",
            at_least=1,
        ),
        figure(
            measure,
            "statements per mail, ours",
            round(ours.per_mail, 2),  # the wake's task: one INSERT per 2 s, not per mail
            "statements",
            at_most=3,
            note=f"{ours.commits / ours.count:.1f} commits/mail; with the wake-up task's INSERT",
        ),
        figure(
            measure,
            "statements per mail, post_office",
            post_office.per_mail,
            "statements",
            note=f"{post_office.commits / post_office.count:.1f} commits/mail",
        ),
        figure(
            measure,
            "statements per mail, django-mailer",
            mailer.per_mail,
            "statements",
            note=f"{mailer.commits / mailer.count:.1f} commits/mail",
        ),
    ]


def rss(sizes: Sizes) -> list[Figure]:
    """Ours' worker (1 process, 0 ms ESP) draining a small and a 10× larger outbox."""
    peaks = {}
    for count in (sizes.rss_small, sizes.rss_large):
        started = time.perf_counter()
        queue_ours_in_bulk(count)
        log(f"queued {count:,} for the RSS run in {time.perf_counter() - started:.0f} s")
        with fake_esp(0) as esp:
            result = run_drain("ours", 1, count, esp["url"])
        assert esp["accepted"] == count, esp
        peaks[count] = result["peak_rss"]
        rate = count / result["seconds"]
        log(
            f"drained {count:,} in {result['seconds']:.0f} s ({rate:,.0f} msg/s): "
            f"peak RSS {result['peak_rss'] / 2**20:.0f} MB"
        )
    measure = "peers: worker RSS"
    small, large = sizes.rss_small, sizes.rss_large
    return [
        figure(measure, f"peak RSS draining {small:,}", peaks[small] / 2**20, "MB"),
        figure(measure, f"peak RSS draining {large:,}", peaks[large] / 2**20, "MB"),
        figure(
            measure,
            f"RSS ratio {large:,} / {small:,}",
            peaks[large] / peaks[small],
            "×",
            at_most=1.1,
        ),
    ]


# ---- 3: one-event webhooks under gunicorn ---------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def gunicorn(side: str) -> Iterator[int]:
    """A gunicorn of 4 sync workers serving ``side``'s settings; yields its port."""
    port = free_port()
    # Its messages go to a file, not a pipe: nobody reads a pipe while it serves.
    with tempfile.TemporaryFile("w+") as errors:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "--workers",
                str(GUNICORN_WORKERS),
                "--worker-class",
                "sync",
                "--bind",
                f"127.0.0.1:{port}",
                "--log-level",
                "warning",
                "benchmarks.peers_wsgi:application",
            ],
            env=child_env(side, MAILLOG_PEER_PERSISTENT="1"),
            cwd=ROOT,
            stderr=errors,
            start_new_session=True,
        )
        try:
            wait_until_serving(server, port, errors)
            yield port
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()


def wait_until_serving(server: subprocess.Popen[bytes], port: int, errors: Any) -> None:
    deadline = time.monotonic() + 60
    while True:
        if server.poll() is not None:
            errors.seek(0)
            raise RuntimeError(f"gunicorn exited: {errors.read()[-2000:]}")
        with contextlib.suppress(OSError):
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/")
            connection.getresponse().read()
            connection.close()
            return
        if time.monotonic() > deadline:
            raise TimeoutError("gunicorn did not answer")
        time.sleep(0.1)


@dataclass
class Posted:
    seconds: float
    latencies: list[float]
    queries: list[int]

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def post_events(port: int, bodies: list[bytes]) -> Posted:
    """``bodies`` POSTed by :data:`CLIENTS` threads, one request at a time each."""
    latencies: list[float] = []
    queries: list[int] = []
    failures: list[str] = []
    lock = threading.Lock()
    pending = iter(bodies)

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        headers = {"Content-Type": "application/json", "Authorization": AUTH}
        while True:
            with lock:
                body = next(pending, None)
            if body is None:
                return
            start = time.perf_counter()
            connection.request("POST", WEBHOOK, body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            elapsed = time.perf_counter() - start
            if response.will_close:
                connection.close()  # a sync worker closes after each answer
            with lock:
                if response.status != 200:
                    failures.append(f"HTTP {response.status}")
                latencies.append(elapsed)
                queries.append(int(response.getheader("X-Bench-Queries", "-1")))

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - start
    assert not failures, failures[:5]
    return Posted(seconds, latencies, queries)


def webhook_pairs(count: int) -> list[tuple[str, str]]:
    """(Postmark MessageID, address) of mail ours handed to the fake ESP in the drains."""
    from wagtail_maillog.models import Recipient

    pairs = list(
        Recipient.objects.exclude(esp_message_id="")
        .order_by("pk")
        .values_list("esp_message_id", "address")[:count]
    )
    assert len(pairs) == count, f"only {len(pairs)} sent recipients to post events for"
    return pairs


def seed_history(pairs: list[tuple[str, str]]) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".json") as out:
        json.dump(pairs, out)
        out.flush()
        run_child(["seed-history", out.name], child_env("history"))


SIDES = [
    ("ours", "ours"),
    ("history", "anymail-history"),
    ("anymail", "anymail, no receiver"),
]


def webhooks(events: int, rounds: int) -> list[Figure]:
    """Each side in turn, ``rounds`` times, ``events`` new events each time; a side's
    rate is its median round's, its latencies those of all its rounds.

    In turns, not one side's rounds after another's: this machine's speed drifts by
    ±15 % over minutes, and every side gets its share of the drift. Before each
    round of each side the database is settled (:func:`.harness.settle`)."""
    from wagtail_maillog.models import Event

    pairs = webhook_pairs(WARM_UP_EVENTS + events * rounds)
    seed_history(pairs)
    bodies = [json.dumps(postmark_delivery(m, a)).encode() for m, a in pairs]
    measure = "peers: one-event webhooks"
    posted: dict[str, list[Posted]] = {side: [] for side, _label in SIDES}
    for turn in range(rounds):
        batch = bodies[WARM_UP_EVENTS + turn * events : WARM_UP_EVENTS + (turn + 1) * events]
        for side, label in SIDES:
            settle()
            with gunicorn(side) as port:
                post_events(port, bodies[:WARM_UP_EVENTS])  # each worker: URLs, connection
                done = post_events(port, batch)
            posted[side].append(done)
            log(f"webhooks, {label}, round {turn + 1}: {events / done.seconds:,.0f} ev/s")
    rates: dict[str, float] = {}
    figures: list[Figure] = []
    for side, label in SIDES:
        rate = statistics.median(events / done.seconds for done in posted[side])
        rates[side] = rate
        pooled = Posted(
            sum(done.seconds for done in posted[side]),
            [latency for done in posted[side] for latency in done.latencies],
            [count for done in posted[side] for count in done.queries],
        )
        p50, p99 = pooled.percentile(0.5), pooled.percentile(0.99)
        per_request = sorted(pooled.queries)[len(pooled.queries) // 2]
        log(
            f"webhooks, {label}: {rate:,.0f} ev/s, p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
            f"{per_request} queries/request (max {max(pooled.queries)})"
        )
        on_pg = vendor() == "postgresql"
        rounds_note = f", median of {rounds} rounds" if rounds > 1 else ""
        figures += [
            figure(
                measure,
                f"{label}: events/s",
                rate,
                "ev/s",
                note=f"{GUNICORN_WORKERS} sync workers, {CLIENTS} clients{rounds_note}",
            ),
            figure(
                measure,
                f"{label}: p50 latency",
                p50,
                "ms",
            ),
            figure(
                measure,
                f"{label}: p99 latency",
                p99,
                "ms",
                at_most=50 if side == "ours" and on_pg else None,
            ),
            figure(
                measure,
                f"{label}: queries per request",
                per_request,
                "queries",
                at_most=3 if side == "ours" else None,
                note=f"median; max {max(pooled.queries)}",
            ),
        ]
    stored = Event.objects.filter(esp_name="Postmark").count()
    assert stored >= events * rounds, f"ours stored {stored} events of {events * rounds}"
    figures += [
        figure(
            measure,
            "ratio ours / anymail-history",
            ratio(rates["ours"], rates["history"]),
            "×",
            at_least=1,
        ),
        figure(
            measure,
            "ratio ours / anymail, no receiver",
            ratio(rates["ours"], rates["anymail"]),
            "×",
            at_least=0.5,
        ),
    ]
    return figures


# ---- 4: the mail log against post_office's changelist ---------------------------


def fill_post_office(total: int) -> None:
    """post_office's Email table up to ``total`` rows, set-based as benchmarks/generate.py
    fills ours: mostly sent, 5% failed, 1% queued, over the last 60 days."""
    from django.db import connection, transaction
    from django.utils import timezone
    from post_office.models import Email

    from .generate import Dialect, _defaults, _hash

    add = total - Email.objects.count()
    if add <= 0:
        return
    d = Dialect(connection.vendor)
    roll = _hash(7, 1000)
    at = d.at(f"{_hash(1, 60 * 86400)} + 60")
    columns, values = _defaults(
        Email,
        {
            "from_email": f"'{FROM}'",
            "to": d.concat("'customer'", "s.i", "'@example.com'"),
            "subject": d.concat("'Order '", "s.i", "' shipped'"),
            "message": "'Your order is on its way.'",
            "status": f"(CASE WHEN {roll} < 50 THEN 1 WHEN {roll} < 60 THEN 2 ELSE 0 END)",
            "priority": "1",
            "created": at,
            "last_updated": at,
            "message_id": d.concat("'<po-'", "s.i", "'@example.com>'"),
            "number_of_retries": "0",
        },
        connection,
    )
    sql = d.insert_series(connection.ops.quote_name(Email._meta.db_table), columns, values)
    now = int(timezone.now().timestamp())
    with connection.cursor() as cursor:
        for lo in range(1, add + 1, 100_000):
            hi = min(lo + 100_000, add + 1) - 1
            with transaction.atomic():
                cursor.execute(sql, {"lo": lo, "hi": hi, "now": now})


def pages(rows: int) -> list[Figure]:
    from django.urls import reverse

    from wagtail_maillog.models import Message

    from .generate import generate
    from .maillog_pages import client_as_superuser, time_page

    started = time.perf_counter()
    generate(max(0, rows - Message.objects.count()))
    fill_post_office(rows)
    analyze()
    log(f"filled both logs to {rows:,} rows in {time.perf_counter() - started:.0f} s")
    client = client_as_superuser()
    index = reverse("wagtail_maillog:index")
    changelist = reverse("admin:post_office_email_changelist")
    urls = {
        ("first page", "ours"): index,
        ("first page", "post_office"): changelist,
        ("status filter", "ours"): f"{index}?status=bounced",
        ("status filter", "post_office"): f"{changelist}?status__exact=1",
    }
    for url in (index, changelist):
        client.get(url)  # warm-up: templates, URL resolvers, caches
    measure = "peers: mail log pages"
    figures: list[Figure] = [figure(measure, "rows in each log", rows)]
    timings = {}
    for (page, side), url in urls.items():
        timing = time_page(client, url)
        timings[page, side] = timing
        label = "ours" if side == "ours" else "post_office changelist"
        log(f"{page}, {label}: {timing.ms:.0f} ms, {timing.queries} queries")
        figures.append(
            figure(
                measure,
                f"{page}, {label}",
                timing.ms,
                "ms",
                note=f"{timing.queries} queries, {timing.sql_ms:.0f} ms in SQL",
                extra={"queries": timing.queries, "sql_ms": round(timing.sql_ms, 1)},
            )
        )
    for page in ("first page", "status filter"):
        figures += [
            figure(
                measure,
                f"{page}: time ours / post_office",
                ratio(timings[page, "ours"].ms, timings[page, "post_office"].ms),
                "×",
                at_most=1,
            ),
            figure(
                measure,
                f"{page}: queries, ours",
                timings[page, "ours"].queries,
                "queries",
                at_most=8,
            ),
        ]
    return figures


#: The parts of the run, in order; ``MAILLOG_PEERS_PARTS=webhooks,pages`` runs some.
PARTS = ("drains", "webhooks", "rss", "pages")


def run(quick: bool) -> list[Figure]:
    sizes = QUICK if quick else FULL
    parts = os.environ.get("MAILLOG_PEERS_PARTS", ",".join(PARTS)).split(",")
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise SystemExit(f"MAILLOG_PEERS_PARTS: no part {sorted(unknown)}; the parts: {PARTS}")
    migrate_peers()
    counter.install()
    figures: list[Figure] = []
    if "drains" in parts:
        figures, queueing = drains(sizes.drain)
        figures = queueing_figures(queueing) + figures
    if "webhooks" in parts:
        if "drains" not in parts:  # the events are for mail ours handed over
            drain_once("ours", 1, WARM_UP_EVENTS + sizes.events * sizes.rounds, 0.0)
        figures += webhooks(sizes.events, sizes.rounds)
    if "rss" in parts:
        figures += rss(sizes)
    if "pages" in parts:
        figures += pages(sizes.rows)
    return figures


if __name__ == "__main__":
    main(run, __doc__)
