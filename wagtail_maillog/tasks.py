"""Asking django-q2 for a task without closing the caller's database connection.

django-q2's ORM broker calls Django's ``close_old_connections()`` before each of
its queries, unless the broker's database is inside ``atomic``. Django calls it
at a request's end; anywhere else it closes a connection its owner still uses,
for with ``CONN_MAX_AGE = 0`` (Django's default) every connection counts as old.
A view that sent mail (the outbox's wake-up, after its commit) then opened a
second connection for the rest of its request, and a worker in the middle of
its run one for its next batch: each a new PostgreSQL backend (milliseconds),
whose kept plans (:mod:`.plans`) started over. Inside ``atomic`` the broker
leaves them open; its one INSERT commits at the block's end.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from django.db import transaction


@contextlib.contextmanager
def keeping_connections() -> Iterator[None]:
    """The block's broker calls leave the database connections open (ORM broker);
    nothing to do for another broker, or when tasks run at once (``sync``)."""
    from django_q.conf import Conf

    if not Conf.ORM or Conf.SYNC:
        yield
        return
    with transaction.atomic(using=Conf.ORM):
        yield


def async_task(task: str, *args: Any, **kwargs: Any) -> Any:
    """django-q2's ``async_task``, in :func:`keeping_connections`."""
    from django_q import tasks

    with keeping_connections():
        return tasks.async_task(task, *args, **kwargs)
