"""Benchmark settings: the test settings, on SQLite files or PostgreSQL."""

import os

from tests.settings import *  # noqa: F403

if os.environ.get("MAILLOG_TEST_DB", "sqlite") == "sqlite":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("MAILLOG_BENCH_SQLITE", "/tmp/maillog-bench.sqlite3"),
            "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 20},
        }
    }
DEBUG = False
