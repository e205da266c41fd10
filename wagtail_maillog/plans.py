"""When to call the PostgreSQL functions that keep their plans, instead of their statements.

PostgreSQL parses and plans every statement Django sends: Django prepares none, for
the sake of connection poolers. The statements of a PL/pgSQL function are planned
at its first call in a database session, and the plans kept for the rest of the
session, whatever pooler sits in between. That first call costs more than the
statement (0.8 ms more for the one-event write), so a function pays where its
session goes on (docs/performance.md):

* :func:`keeps_plans`: the settings keep connections beyond a request
  (``CONN_MAX_AGE``, Django's pool);
* :func:`repeats`: or this session has run the same write :data:`REPEATS` times
  already: an outbox worker, a command, a mailing, a loop of ``send()`` calls
  (psycopg's own rule for preparing a statement).

The functions: ``wagtail_maillog_store_one_event`` (migration 0016,
:mod:`.events`) and ``wagtail_maillog_record_one`` (migration 0017,
:mod:`.recording`).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

#: Runs of a write in one session before its function is called instead (psycopg's
#: ``prepare_threshold``): the function's first call costs about what five calls save.
REPEATS = 5


def keeps_plans(connection: Any) -> bool:
    """Whether this PostgreSQL connection outlives the request (``CONN_MAX_AGE`` other
    than 0, or Django's connection pool), so that a function's plans, made at its
    first call in the session, serve again."""
    settings = connection.settings_dict
    return settings.get("CONN_MAX_AGE") != 0 or bool(settings.get("OPTIONS", {}).get("pool"))


def repeats(connection: Any, name: str) -> bool:
    """Count one run of the write ``name`` in ``connection``'s database session: whether
    its function is to be called (:func:`keeps_plans`, or :data:`REPEATS` runs before
    this one in the same session).

    ``connection`` is Django's wrapper of one alias (``connections[alias]``): the
    count is kept with the session it opened (a closed connection's new session
    starts again from 0).
    """
    if keeps_plans(connection):
        return True
    connection.ensure_connection()  # the session the write will run in, not None
    session = connection.connection
    kept = connection.__dict__.get("_maillog_runs")
    if kept is None or kept[0] is not session:
        kept = connection.__dict__["_maillog_runs"] = (session, Counter())
    runs = kept[1]
    runs[name] += 1
    return runs[name] > REPEATS
