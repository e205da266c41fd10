"""Handing messages to their connectors' backends, several at a time.

A worker run opens one backend per connector and per sending thread, and keeps
it for the whole run: for anymail, one ``requests`` session (one kept-alive
connection to the ESP's API); for Django's SMTP backend, one SMTP connection.
Before, every message built a new backend and a new TCP connection.

With ``SEND_THREADS`` above 1, the ESP calls overlap once the ESP is slow (20 ms
or more a call, :data:`SLOW_CALL`), so it does not leave the worker idle; while
calls are quicker, threads would only cost, and the calls go one after the
other in the worker's thread, in the order of the claim. The threads only talk to
the ESP: everything anymail does around the call runs in the worker's own
thread, on its database connection and in its transaction order — the
``pre_send`` and ``post_send`` signals (our receivers, other apps' receivers, a
backend's own ``run_post_send``). A thread asks the worker's thread to run
them and waits for the answer. (Django's database connections are per thread:
a receiver writing from a sending thread would open a connection of its own,
outside the worker's transactions, and in tests outside the test's.)
"""

from __future__ import annotations

import functools
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests
from anymail.backends.base import AnymailBaseBackend
from requests.utils import getproxies

from . import connectors

logger = logging.getLogger(__name__)

#: How long (seconds) the worker's thread waits at most, while calls overlap, before
#: it runs its ``tick`` (the worker renews its leases there).
TICK_SECONDS = 1.0
#: An ESP that takes this long a call (seconds, on average) is slow: the calls overlap.
SLOW_CALL = 0.02


@dataclass(eq=False)
class Job:
    """One message for one connector, and what handing it over gave."""

    connector: str
    message: Any
    sent: int = 0
    error: BaseException | None = None
    #: Set by :meth:`cancel` before the call started: the claim was lost, do not send.
    skip: bool = False
    started: bool = False
    context: Any = None  # the caller's own record of the message
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def cancel(self) -> bool:
        """Do not send this job; False if its call has started already."""
        with self._lock:
            if not self.started:
                self.skip = True
            return self.skip

    def start(self) -> bool:
        """Mark the call as started; False if the job was cancelled."""
        with self._lock:
            if not self.skip:
                self.started = True
            return self.started


@dataclass(eq=False)
class _Call:
    """A function a sending thread needs run in the worker's thread."""

    function: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    done: threading.Event = field(default_factory=threading.Event)
    value: Any = None
    error: BaseException | None = None

    def run(self) -> None:
        try:
            self.value = self.function(*self.args, **self.kwargs)
        except BaseException as exc:  # handed back to the thread that asked, as anymail expects
            self.error = exc
        finally:
            self.done.set()


def _netrc_file() -> bool:
    """Whether requests would find a .netrc file (the places ``get_netrc_auth`` looks)."""
    if os.environ.get("NETRC"):
        return True
    return any(os.path.exists(os.path.expanduser(f"~/{name}")) for name in (".netrc", "_netrc"))


def settle_environment(backend: Any) -> None:
    """Read once, for a whole run, what ``requests`` reads from the environment per call.

    A ``requests`` session that trusts the environment looks up the proxy
    variables, ``no_proxy``, a .netrc file and the CA bundle variables for every
    request (about 0.1 ms of a 1.5 ms hand-over). When the environment sets no
    proxy and there is no .netrc file, what it gives does not depend on the URL:
    the session stops reading it, with the CA bundle it names kept. Otherwise
    (a proxy, a .netrc) the session is left as anymail made it.
    """
    session = getattr(backend, "session", None)
    if not isinstance(session, requests.Session) or not session.trust_env:
        return
    if getproxies() or _netrc_file():
        return
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle and session.verify is True:
        session.verify = bundle
    session.trust_env = False


def _close(backend: Any) -> None:
    try:
        backend.close()
    except Exception:  # a connection that is already gone
        logger.debug("Closing the backend %r failed", backend, exc_info=True)


class Senders:
    """Sends jobs through one open backend per connector and thread, for a whole run.

    ``threads`` is the most calls at once; 1 sends in the caller's thread only.
    Use as a context manager (or call :meth:`close`): the backends and threads
    are closed at the end.
    """

    def __init__(self, threads: int = 1) -> None:
        self.size = max(1, int(threads or 1))
        self._own: dict[str, Any] = {}  # the backends of the caller's thread
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._inbox: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._calls, self._seconds = 0, 0.0  # the calls made in the caller's thread

    def __enter__(self) -> Senders:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the caller's side -------------------------------------------------------

    def send(self, jobs: list[Job], tick: Callable[[], None] | None = None) -> None:
        """Hand every job to its connector; return when all are done.

        The calls go one after the other in the caller's thread while they are
        quick (a local SMTP server, the sandbox: threads would only cost), and
        overlap once they are slow (:meth:`overlapping`). ``tick`` runs in the
        caller's thread before each call, or while calls overlap, after each
        relayed signal and call done, and at least every :data:`TICK_SECONDS`
        (the worker renews its leases there).
        """
        waiting = list(jobs)
        while waiting and not self.overlapping():
            job = waiting.pop(0)
            if tick is not None:
                tick()
            began = time.monotonic()
            self._hand_over(job, self._own, relay=False)
            if job.started:
                self._calls += 1
                self._seconds += time.monotonic() - began
        if waiting:
            self._in_threads(waiting, tick)

    def overlapping(self) -> bool:
        """Calls overlap once this run's calls took :data:`SLOW_CALL` seconds or more on
        average (two of them at least), if there may be more than one thread."""
        return self.size > 1 and self._calls >= 2 and self._seconds / self._calls >= SLOW_CALL

    def _in_threads(self, jobs: list[Job], tick: Callable[[], None] | None) -> None:
        self._start()
        for job in jobs:
            self._jobs.put(job)
        pending, failure = len(jobs), None
        while pending:  # until every job is done, whatever happens: the threads wait on us
            try:
                kind, item = self._inbox.get(timeout=TICK_SECONDS)
            except queue.Empty:
                kind, item = "", None
            if kind == "done":
                pending -= 1
            elif kind == "call":
                item.run()
            if tick is not None and failure is None:
                try:
                    tick()
                except BaseException as exc:  # no new call starts; the others end first
                    failure = exc
                    for job in jobs:
                        job.cancel()
        if failure is not None:
            raise failure

    def close(self) -> None:
        for _thread in self._threads:
            self._jobs.put(None)
        for thread in self._threads:
            thread.join(timeout=30)
        self._threads = []
        for backend in self._own.values():
            _close(backend)
        self._own = {}

    # -- the sending threads -------------------------------------------------------

    def _start(self) -> None:
        while len(self._threads) < self.size:
            thread = threading.Thread(
                target=self._loop, name=f"maillog-sender-{len(self._threads)}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def _loop(self) -> None:
        from django.db import connections

        backends: dict[str, Any] = {}
        try:
            while (job := self._jobs.get()) is not None:
                try:
                    self._hand_over(job, backends, relay=True)
                finally:
                    self._inbox.put(("done", job))
        finally:
            for backend in backends.values():
                _close(backend)
            connections.close_all()  # this thread's only: none, unless a backend opened one

    def _in_callers_thread(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        call = _Call(function, args, kwargs)
        self._inbox.put(("call", call))
        call.done.wait()
        if call.error is not None:
            raise call.error
        return call.value

    def _open(self, name: str, relay: bool) -> Any:
        backend = connectors.open_connection(name)
        if relay and isinstance(backend, AnymailBaseBackend):
            # anymail's signals (and a backend's own run_post_send) in the caller's thread
            for method in ("run_pre_send", "run_post_send"):
                original = getattr(backend, method)
                setattr(backend, method, functools.partial(self._in_callers_thread, original))
        backend.open()  # kept open: send_messages() then leaves it open after each call
        settle_environment(backend)
        return backend

    def _hand_over(self, job: Job, backends: dict[str, Any], relay: bool) -> None:
        if not job.start():
            return
        try:
            backend = backends.get(job.connector)
            if backend is None:
                backend = backends[job.connector] = self._open(job.connector, relay)
            job.sent = backend.send_messages([job.message]) or 0
        except Exception as exc:
            job.error = exc
            # A connection that failed may be broken (SMTP): the next job opens a new one.
            failed = backends.pop(job.connector, None)
            if failed is not None:
                _close(failed)
