"""SQLite's writers of webhook events queue on a file lock (wagtail_maillog/sqlite_writers.py)."""

from __future__ import annotations

import fcntl
import os
import threading
import time

import pytest
from django.db import connection, transaction

from tests.utils import send_with_ids, tracking_event
from wagtail_maillog import events, sqlite_writers
from wagtail_maillog.models import Event

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's writers"),
]


@pytest.fixture
def database_file(tmp_path, monkeypatch) -> str:
    """The tests' database is in memory: its writers queue as a file's would, on the
    lock file of ``tmp_path/db.sqlite3``."""
    path = str(tmp_path / "db.sqlite3")
    monkeypatch.setattr(sqlite_writers, "lock_path", lambda connection: path)
    return path


def test_only_a_database_file_has_a_queue(tmp_path):
    class Connection:
        vendor = "sqlite"
        settings_dict = {"NAME": str(tmp_path / "db.sqlite3")}

    assert sqlite_writers.lock_path(Connection()) == str(tmp_path / "db.sqlite3")
    for memory in (":memory:", "file:memorydb_default?mode=memory&cache=shared", ""):
        Connection.settings_dict = {"NAME": memory}
        assert sqlite_writers.lock_path(Connection()) is None, memory
    Connection.vendor = "postgresql"
    Connection.settings_dict = {"NAME": "test"}
    assert sqlite_writers.lock_path(Connection()) is None


def _held_elsewhere(path: str, seconds: float) -> threading.Thread:
    """The queue's lock taken by another open file (as another process takes it)."""
    taken = threading.Event()

    def hold() -> None:
        descriptor = os.open(path + sqlite_writers.SUFFIX, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            taken.set()
            time.sleep(seconds)
            fcntl.flock(descriptor, fcntl.LOCK_UN)
        finally:
            os.close(descriptor)

    holder = threading.Thread(target=hold)
    holder.start()
    assert taken.wait(5)
    return holder


def test_an_event_waits_for_the_writer_before_it(database_file):
    send_with_ids(["ann@example.com"], "esp-1")
    holder = _held_elsewhere(database_file, 0.5)
    started = time.monotonic()
    events.ingest([(tracking_event(), "Test")])
    waited = time.monotonic() - started
    holder.join()
    assert waited >= 0.4, waited
    assert Event.objects.count() == 1


def test_inside_a_transaction_it_does_not_queue(database_file):
    """The caller's transaction may hold SQLite's lock already: waiting on the file
    lock then could keep the writer before it waiting on both."""
    send_with_ids(["ann@example.com"], "esp-1")
    holder = _held_elsewhere(database_file, 0.5)
    started = time.monotonic()
    with transaction.atomic():
        events.ingest([(tracking_event(), "Test")])
    waited = time.monotonic() - started
    holder.join()
    assert waited < 0.4, waited
    assert Event.objects.count() == 1


def test_a_forked_process_opens_its_own_lock_file(database_file):
    """flock does not exclude processes sharing an inherited descriptor."""
    path = database_file
    with sqlite_writers.queued_writer(connection):
        pass
    inherited = sqlite_writers._files[path][1]
    child = os.fork()
    if child == 0:  # pragma: no cover - the child's answer is its exit status
        own = sqlite_writers._descriptor(path)
        os._exit(0 if own != inherited else 1)
    _pid, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
