"""The child processes of the side-by-side benchmark (:mod:`benchmarks.peers`).

    python -m benchmarks.peers_run esp [--latency S]
    python -m benchmarks.peers_run drain KIND --processes N --count C
    python -m benchmarks.peers_run seed-history FILE
    python -m benchmarks.peers_run webhook-wal FILE

``esp``: the loopback fake Postmark API of tests/fake_esp.py, in a process of
its own (so its threads take no interpreter lock from a sender); prints its
URL, serves until its standard input closes, then prints what it accepted.

``drain``: one sender, in a fresh process with ``benchmarks.peer_settings``
(``MAILLOG_PEER_SIDE`` set by the parent), drains what the parent queued and
prints, as JSON, the seconds from the first claim to an empty queue, the CPU
seconds of this process and its children, the SQL statements every connection
of every thread ran (an execute wrapper, counted as Django counts queries), and
the peak RSS. KIND is ``ours`` (``process_outbox`` in N processes forked after
set-up, as django-q2 workers would run it), ``post_office``
(``send_queued_mail_until_done``, what ``manage.py send_queued_mail
--processes N`` runs), ``mailer`` (django-mailer's ``engine.send_all``, what
``manage.py send_mail`` runs) or ``anymail`` (plain anymail: one Postmark
backend, opened once, ``send_messages`` in chunks of 100; no database).

``seed-history``: anymail-history's ``SentMessage`` rows for the given
(ESP message id, address) pairs, so its webhook receiver finds what ours finds.

``webhook-wal``: a Postmark delivery for each pair, one a request through
Django's test client, on this side; prints, as JSON, the WAL the requests after
the first 20 appended (:func:`.harness.wal_appended`) and how many they were
(:mod:`benchmarks.write_volume`).
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import json
import multiprocessing
import os
import resource
import sys
import threading
import time
from typing import Any

FROM = "shop@example.com"
BODY = "Your order is on its way.\n" * 20
AUTH = "Basic " + base64.b64encode(b"hook:secret").decode()
WEBHOOK = "/anymail/postmark/tracking/"
#: Requests of a webhook WAL count that only warm up (URLs, the session's function).
WARM_UP_POSTS = 20


def postmark_delivery(message_id: str, email: str) -> dict[str, Any]:
    """Postmark's one-event delivery webhook (as tests/test_webhook_surface.py posts it)."""
    return {
        "RecordType": "Delivery",
        "ServerID": 23,
        "MessageStream": "outbound",
        "MessageID": message_id,
        "Recipient": email,
        "DeliveredAt": "2026-11-05T16:33:50Z",
        "Details": "250 OK",
        "Tag": "",
        "Metadata": {},
    }


def post_deliveries(pairs: list[Any]) -> None:
    """A delivery for each (ESP message id, address), one request each, in-process."""
    from django.test import Client

    client = Client()
    for message_id, email in pairs:
        response = client.post(
            WEBHOOK,
            json.dumps(postmark_delivery(message_id, email)),
            content_type="application/json",
            HTTP_AUTHORIZATION=AUTH,
        )
        assert response.status_code == 200, response.status_code


def webhook_wal(pairs: list[Any]) -> dict[str, Any]:
    """The WAL the deliveries of ``pairs`` append, after :data:`WARM_UP_POSTS` of them."""
    from .harness import wal_appended

    post_deliveries(pairs[:WARM_UP_POSTS])
    amount, unit = wal_appended(lambda: post_deliveries(pairs[WARM_UP_POSTS:]))
    return {"amount": amount, "unit": unit, "events": len(pairs) - WARM_UP_POSTS}


def subject(i: int) -> str:
    return f"Order {i} shipped"


def address(i: int) -> str:
    return f"customer{i}@example.com"


# ---- the fake ESP ---------------------------------------------------------------


def serve_esp(latency: float) -> None:
    from tests.fake_esp import FakeESP

    names = {f.name for f in dataclasses.fields(FakeESP)}

    class BenchESP(FakeESP):
        """Keeps counts, not every request: 100,000 mails would fill its memory."""

        def _record(self, request: Any) -> None:
            with self._lock:
                self.calls = getattr(self, "calls", 0) + 1

        def _add_sent(self, sent: Any) -> None:
            with self._lock:
                self.accepted = getattr(self, "accepted", 0) + 1

    options: dict[str, Any] = {}
    if "keep_alive" in names:  # connections kept open, as a real API keeps them
        options["keep_alive"] = True
    if "latency" in names:
        options["latency"] = latency
    fake = BenchESP(**options)
    if latency and "latency" not in names:  # an older fake: add the wait in front
        handler = _slow_handler(latency)
        fake.start()
        fake._server.RequestHandlerClass = handler  # type: ignore[union-attr]
    else:
        fake.start()
    print(json.dumps({"url": fake.postmark_api_url, "keep_alive": "keep_alive" in names}))
    sys.stdout.flush()
    sys.stdin.read()  # until the parent closes it
    counts = {"accepted": getattr(fake, "accepted", 0), "calls": getattr(fake, "calls", 0)}
    print(json.dumps(counts))
    sys.stdout.flush()
    fake.stop()


def _slow_handler(latency: float) -> type:
    from tests import fake_esp

    class Slow(fake_esp._Handler):
        def _handle(self) -> None:
            time.sleep(latency)
            super()._handle()

    return Slow


# ---- counting -------------------------------------------------------------------


#: Transaction control, not counted as statements (as tests/test_statement_counts.py
#: counts): BEGIN goes through a cursor on SQLite only; commits are counted apart.
CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE SAVEPOINT")


def is_control(sql: str) -> bool:
    return sql.lstrip()[:20].upper().startswith(CONTROL)


class StatementCounter:
    """SQL statements and commits of every connection this process opens, in any thread.

    Statements as Django counts queries (one ``executemany`` is one), less
    transaction control; commits are the transactions that wrote. An execute
    wrapper, so nothing is kept per statement (no debug cursor, no memory growth).
    """

    def __init__(self) -> None:
        self.count = 0
        self.commits = 0
        self._lock = threading.Lock()

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if not is_control(sql):
            with self._lock:
                self.count += 1
        return execute(sql, params, many, context)

    def _counting_commit(self, commit: Any) -> Any:
        def counted() -> Any:
            with self._lock:
                self.commits += 1
            return commit()

        counted.counted_by = self  # type: ignore[attr-defined]
        return counted

    def install(self) -> None:
        from django.db import connections
        from django.db.backends.signals import connection_created

        def hook(sender: Any, connection: Any, **kwargs: Any) -> None:
            if self not in connection.execute_wrappers:
                connection.execute_wrappers.append(self)
            if getattr(connection._commit, "counted_by", None) is not self:
                connection._commit = self._counting_commit(connection._commit)

        connection_created.connect(hook, weak=False)
        for connection in connections.all(initialized_only=True):
            hook(None, connection)


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def peak_rss() -> int:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) * 1024


# ---- the drains -----------------------------------------------------------------


def _ours_worker(results: Any) -> None:
    counter = StatementCounter()
    counter.install()
    from wagtail_maillog.outbox.worker import process_outbox

    outcome = process_outbox(time_budget=24 * 3600)
    results.put({"statements": counter.count, "commits": counter.commits, "outcome": outcome})


def drain_ours(processes: int) -> dict[str, Any]:
    from django.db import connections

    if processes == 1:
        queue: Any = _ListQueue()
        _ours_worker(queue)
        found = queue.items
    else:
        connections.close_all()  # each child opens its own
        context = multiprocessing.get_context("fork")
        results = context.Queue()
        children = [context.Process(target=_ours_worker, args=(results,)) for _ in range(processes)]
        for child in children:
            child.start()
        found = [results.get() for _ in children]
        for child in children:
            child.join()
    return {
        "statements": sum(r["statements"] for r in found),
        "commits": sum(r["commits"] for r in found),
        "outcome": "; ".join(r["outcome"] for r in found),
    }


class _ListQueue:
    def __init__(self) -> None:
        self.items: list[Any] = []

    def put(self, item: Any) -> None:
        self.items.append(item)


def drain_post_office(processes: int, counter: StatementCounter) -> dict[str, Any]:
    from post_office.mail import send_queued_mail_until_done

    lock = os.environ.get("MAILLOG_PEER_LOCK", "/tmp/maillog-peers") + "-post-office"
    send_queued_mail_until_done(lockfile=lock, processes=processes)
    # With processes > 1 the sending happens in a fork pool whose statements this
    # process cannot see: none reported then.
    if processes > 1:
        return {"statements": None, "commits": None}
    return {"statements": counter.count, "commits": counter.commits}


def drain_mailer(counter: StatementCounter) -> dict[str, Any]:
    from mailer import engine

    engine.send_all()
    return {"statements": counter.count, "commits": counter.commits}


def drain_anymail(count: int) -> dict[str, Any]:
    from django.core.mail import EmailMessage, get_connection

    connection = get_connection("anymail.backends.postmark.EmailBackend")
    connection.open()
    try:
        for start in range(0, count, 100):
            chunk = [
                EmailMessage(subject(i), BODY, FROM, [address(i)])
                for i in range(start, min(start + 100, count))
            ]
            sent = connection.send_messages(chunk)
            assert sent == len(chunk), (sent, len(chunk))
    finally:
        connection.close()
    return {"statements": 0, "commits": 0}


def drain(kind: str, processes: int, count: int) -> dict[str, Any]:
    import django

    django.setup()
    counter = StatementCounter()
    if kind != "ours":  # ours counts in each worker (the children of a fork included)
        counter.install()
    cpu, start = cpu_seconds(), time.perf_counter()
    if kind == "ours":
        result = drain_ours(processes)
    elif kind == "post_office":
        result = drain_post_office(processes, counter)
    elif kind == "mailer":
        result = drain_mailer(counter)
    else:
        result = drain_anymail(count)
    return {
        **result,
        "seconds": time.perf_counter() - start,
        "cpu_seconds": cpu_seconds() - cpu,
        "peak_rss": peak_rss(),
    }


# ---- anymail-history's rows -----------------------------------------------------


def seed_history(path: str) -> None:
    import django

    django.setup()
    from anymail_history.models import SentMessage

    with open(path) as given:
        pairs = json.load(given)
    SentMessage.objects.bulk_create(
        (
            SentMessage(
                esp_name="Postmark",
                message_id=message_id,
                status="sent",
                subject=subject(n),
                recipient_email=email,
                content=BODY,
            )
            for n, (message_id, email) in enumerate(pairs)
        ),
        batch_size=500,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    esp = commands.add_parser("esp")
    esp.add_argument("--latency", type=float, default=0)
    one = commands.add_parser("drain")
    one.add_argument("kind", choices=["ours", "post_office", "mailer", "anymail"])
    one.add_argument("--processes", type=int, default=1)
    one.add_argument("--count", type=int, required=True)
    seed = commands.add_parser("seed-history")
    seed.add_argument("file")
    wal = commands.add_parser("webhook-wal")
    wal.add_argument("file")
    args = parser.parse_args()
    if args.command == "esp":
        serve_esp(args.latency)
    elif args.command == "drain":
        print(json.dumps(drain(args.kind, args.processes, args.count)))
    elif args.command == "webhook-wal":
        import django

        django.setup()
        with open(args.file) as given:
            print(json.dumps(webhook_wal(json.load(given))))
    else:
        seed_history(args.file)


if __name__ == "__main__":
    main()
