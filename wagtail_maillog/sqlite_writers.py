"""SQLite: the webhook's writers queue on a file lock instead of SQLite's busy handler.

SQLite has one writer at a time. A connection that finds the database locked
sleeps in SQLite's busy handler, 1, 2, 5, 10, ... ms between its tries, however
soon the lock is free: with a few WSGI workers storing one event each, most of
a request's time went to those sleeps (and its p99 to their sum). Writers that
wait on an exclusive ``flock`` of a file beside the database are woken as soon
as it is released, in turn. Only around a transaction of its own: inside one
(``ATOMIC_REQUESTS``), the connection may hold SQLite's lock already, and taking
the file lock then could keep another writer waiting on both.

Nothing else changes: SQLite's lock still decides, so writers that do not take
the file lock (the outbox worker, the admin) are safe, only not queued.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

try:
    import fcntl
except ImportError:  # Windows: SQLite's busy handler alone
    fcntl = None  # type: ignore[assignment]

SUFFIX = "-maillog-writers"

_lock = threading.Lock()  # the threads of a process, which share their file descriptor
_files: dict[str, tuple[int, int]] = {}  # database file -> (pid, descriptor)


def _descriptor(path: str) -> int:
    """This process's descriptor of the lock file (a forked process opens its own:
    ``flock`` does not exclude processes sharing an inherited descriptor)."""
    pid = os.getpid()
    known = _files.get(path)
    if known is None or known[0] != pid:
        _files[path] = (pid, os.open(path + SUFFIX, os.O_RDWR | os.O_CREAT, 0o600))
    return _files[path][1]


def lock_path(connection: Any) -> str | None:
    """The database file whose writers queue, or None (not SQLite, in memory, no flock)."""
    if fcntl is None or connection.vendor != "sqlite":
        return None
    name = str(connection.settings_dict["NAME"] or "")
    if not name or name == ":memory:" or name.startswith("file:") or "mode=memory" in name:
        return None
    return name


@contextmanager
def queued_writer(connection: Any) -> Iterator[None]:
    """Hold the database's writer queue around a transaction about to start."""
    path = lock_path(connection)
    if path is None or connection.in_atomic_block:
        yield
        return
    with _lock:
        try:
            descriptor = _descriptor(path)
        except OSError:  # a directory this process may not create files in: no queue
            yield
            return
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(descriptor, fcntl.LOCK_UN)
