"""The WSGI application of the side-by-side webhook servers, counting SQL per request.

``gunicorn benchmarks.peers_wsgi:application`` with ``DJANGO_SETTINGS_MODULE=
benchmarks.peer_settings``: Django's own WSGI handler, and the number of SQL
statements the request ran in an ``X-Bench-Queries`` response header (counted
by an execute wrapper on the worker's connection, as Django counts them, less
transaction control: see :func:`benchmarks.peers_run.is_control`), so
the client reads the server's queries per request without a debug cursor.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django.core.wsgi import get_wsgi_application
from django.db import connection

from .peers_run import is_control

django_application = get_wsgi_application()
HEADER = "X-Bench-Queries"


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    count = [0]
    answer: dict[str, Any] = {}

    def counted(execute: Callable[..., Any], sql: str, params: Any, many: bool, ctx: Any) -> Any:
        count[0] += not is_control(sql)
        return execute(sql, params, many, ctx)

    def deferred(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        answer.update(status=status, headers=headers, exc_info=exc_info)
        return lambda data: None  # Django never calls write()

    with connection.execute_wrapper(counted):
        body = django_application(environ, deferred)
    headers = [*answer["headers"], (HEADER, str(count[0]))]
    start_response(answer["status"], headers, answer["exc_info"])
    return body
