"""Settings of the side-by-side benchmark (benchmarks/peers.py), one per side.

``MAILLOG_PEER_SIDE`` picks the side; every side uses the same database as
:mod:`benchmarks.settings` (the run's own SQLite file, PostgreSQL or MariaDB
database), so ours and the peers are measured on the same rows and server:

* ``ours`` (default): the benchmark settings with wagtail_maillog, the outbox
  (``OutboxBackend``) and one connector, anymail's real Postmark backend;
  django-post_office and django-mailer are installed too (to queue their mail
  and show post_office's admin), neither listens to anymail's signals;
* ``peers``: django-post_office and django-mailer sending through anymail's
  Postmark backend, and plain anymail, *without* wagtail_maillog (whose
  ``pre_send``/``post_send`` receivers would otherwise record the peers' mail);
* ``history``: anymail with anymail-history's receivers, its webhook only;
* ``anymail``: anymail alone, its webhook with no receiver at all;
* ``all``: every app, for ``migrate`` of the peers' tables.

The Postmark API is the loopback fake at ``MAILLOG_PEER_ESP_URL``. SQLite runs
in WAL mode, as a site with several processes (workers, a WSGI server) would
run it, the same for every side.
"""

import os

from benchmarks.settings import *  # noqa: F403
from benchmarks.settings import (
    ANYMAIL,
    DATABASES,
    INSTALLED_APPS,
    MIDDLEWARE,
    Q_CLUSTER,
    WAGTAIL_MAILLOG,
)

SIDE = os.environ.get("MAILLOG_PEER_SIDE", "ours")
POSTMARK = "anymail.backends.postmark.EmailBackend"
_esp_url = os.environ.get("MAILLOG_PEER_ESP_URL", "http://127.0.0.1:9/")  # nothing listens on 9

ANYMAIL = {
    **ANYMAIL,  # the tests' webhook secret and keys
    "WEBHOOK_SECRET": "hook:secret",
    "POSTMARK_SERVER_TOKEN": "postmark-token",
    "POSTMARK_API_URL": _esp_url,
}
POST_OFFICE = {
    "BACKENDS": {"default": POSTMARK},
    "LOCK_FILE_NAME": os.environ.get("MAILLOG_PEER_LOCK", "/tmp/maillog-peers-post-office"),
}
MAILER_EMAIL_BACKEND = POSTMARK
MAILER_LOCK_PATH = os.environ.get("MAILLOG_PEER_LOCK", "/tmp/maillog-peers") + "-mailer"

if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    DATABASES["default"]["OPTIONS"] = {
        **DATABASES["default"].get("OPTIONS", {}),
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL",
    }
# The webhook servers keep their database connection between requests, as a production
# site does (Django's default closes it after each request); the same on every side.
if os.environ.get("MAILLOG_PEER_PERSISTENT"):
    DATABASES["default"]["CONN_MAX_AGE"] = 60

_peer_apps = ["post_office", "mailer"]
_django = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
]

if SIDE in ("ours", "all"):
    INSTALLED_APPS = [a for a in INSTALLED_APPS if a not in _peer_apps] + _peer_apps
    if SIDE == "all":
        INSTALLED_APPS += ["anymail_history"]
    EMAIL_BACKEND = "wagtail_maillog.outbox.backend.OutboxBackend"
    WAGTAIL_MAILLOG = {**WAGTAIL_MAILLOG, "CONNECTORS": {"default": {"BACKEND": POSTMARK}}}
    ROOT_URLCONF = "benchmarks.peers_urls"
else:
    extra = {"peers": _peer_apps, "history": ["anymail_history"], "anymail": []}[SIDE]
    INSTALLED_APPS = ["anymail", *extra, *_django]
    MIDDLEWARE = [m for m in MIDDLEWARE if not m.startswith("wagtail_maillog.")]
    EMAIL_BACKEND = POSTMARK
    ROOT_URLCONF = "benchmarks.peers_urls"
    WAGTAIL_MAILLOG = {}

# The outbox workers here are plain processes calling process_outbox (no cluster): the
# ORM broker only takes the "wake" tasks queueing asks for, as a site's would.
Q_CLUSTER = {
    **{k: v for k, v in Q_CLUSTER.items() if k != "redis"},
    "name": os.environ.get("MAILLOG_Q_NAME", "maillog-peers"),
    "sync": False,
    "orm": "default",
    "timeout": 3600,
    "retry": 4000,
    "log_level": "WARNING",
}
