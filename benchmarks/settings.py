"""Benchmark settings: the test settings, on the benchmarks' own databases.

SQLite: the file ``MAILLOG_BENCH_SQLITE`` (default /tmp/maillog-bench.sqlite3).
PostgreSQL (``MAILLOG_TEST_DB=postgres``): the database ``MAILLOG_BENCH_PG_NAME``
(default ``maillog_bench``), never the tests' ``test`` database. MariaDB
(``MAILLOG_TEST_DB=mysql``): the database ``MAILLOG_BENCH_MYSQL_NAME`` (default
``maillog_bench``), the tests' connection settings. Each is recreated by
:mod:`benchmarks.harness` for each benchmark.
"""

import importlib.util
import os

from tests.settings import *  # noqa: F403
from tests.settings import DATABASES, INSTALLED_APPS

_db = os.environ.get("MAILLOG_TEST_DB", "sqlite")
if _db == "sqlite":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("MAILLOG_BENCH_SQLITE", "/tmp/maillog-bench.sqlite3"),
            "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 20},
        }
    }
else:
    _variable = "MAILLOG_BENCH_MYSQL_NAME" if _db == "mysql" else "MAILLOG_BENCH_PG_NAME"
    _name = os.environ.get(_variable, "maillog_bench")
    if not _name.startswith("maillog_bench"):
        raise RuntimeError(f"benchmarks only use maillog_bench* databases, not {_name!r}")
    DATABASES["default"]["NAME"] = _name
    if _db == "mysql":
        # django-q2's and Wagtail's partial indexes, which MariaDB has not: said at
        # each migrate of a template, about no model of ours.
        SILENCED_SYSTEM_CHECKS = ["models.W036", "models.W037"]

# django-post_office, for the side-by-side mailing queue (the benchmark extra).
if importlib.util.find_spec("post_office") is not None:
    INSTALLED_APPS = [*INSTALLED_APPS, "post_office"]

DEBUG = False

# The send-throughput benchmark's cluster: 2 workers, ORM broker on SQLite,
# Redis with PostgreSQL and MariaDB (MAILLOG_Q_BROKER=redis), tasks that may run long.
if os.environ.get("MAILLOG_BENCH_OUTBOX"):
    EMAIL_BACKEND = "wagtail_maillog.outbox.backend.OutboxBackend"
    WAGTAIL_MAILLOG = {
        "CONNECTORS": {"default": {"BACKEND": "wagtail_maillog.sandbox.SandboxBackend"}},
        "SANDBOX_EVENT_DELAY": None,
    }
    Q_CLUSTER = {
        "name": os.environ.get("MAILLOG_Q_NAME", "maillog-bench"),
        "workers": 2,
        "timeout": 900,
        "retry": 1000,
        "max_attempts": 1,
        "catch_up": False,
        "log_level": "WARNING",
    }
    if os.environ.get("MAILLOG_Q_BROKER") == "redis":
        Q_CLUSTER["redis"] = os.environ.get("MAILLOG_REDIS_URL", "redis://127.0.0.1:6379/0")
    else:
        Q_CLUSTER["orm"] = "default"
