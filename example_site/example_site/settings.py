"""Settings of the wagtail-maillog example site.

The defaults are for a local demo (``bash scripts/demo``). For anything else,
set at least ``DJANGO_DEBUG=0``, ``DJANGO_SECRET_KEY`` and
``DJANGO_ALLOWED_HOSTS``; with debug off the demo secret key is refused.
"""

from __future__ import annotations

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

PROJECT_DIR = Path(__file__).resolve().parent
BASE_DIR = PROJECT_DIR.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DJANGO_DEBUG", True)

_DEMO_SECRET_KEY = "demo-only-insecure-secret-key-do-not-deploy"
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "") or _DEMO_SECRET_KEY
if not DEBUG and SECRET_KEY == _DEMO_SECRET_KEY:
    raise ImproperlyConfigured("Set DJANGO_SECRET_KEY when DJANGO_DEBUG is off.")

# Only this machine by default, even though scripts/demo listens on 0.0.0.0.
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "home",
    "members",
    "wagtail_maillog",
    "anymail",
    "django_q",
    "django_tables2",
    "django_filters",
    "wagtail.contrib.forms",
    "wagtail.sites",
    "wagtail.users",
    "wagtail.snippets",
    "wagtail.documents",
    "wagtail.images",
    "wagtail.search",
    "wagtail.admin",
    "wagtail",
    "modelcluster",
    "taggit",
    "django.contrib.admin",  # templates only (not mounted)
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Mail sent while handling a request is logged as sent by its user.
    "wagtail_maillog.middleware.MailLogUserMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "example_site.urls"
WSGI_APPLICATION = "example_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [PROJECT_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.debug",
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# SQLite shared by runserver and the django-q2 cluster: WAL and a busy timeout
# let the two processes write without "database is locked".
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("EXAMPLE_SITE_DB", str(BASE_DIR / "db.sqlite3")),
        "OPTIONS": {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        },
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.environ.get("DJANGO_TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "static"
MEDIA_URL = "/media/"
MEDIA_ROOT = BASE_DIR / "media"

# Wagtail
WAGTAIL_SITE_NAME = "Example Club"
# the host of confirmation links: the port scripts/demo serves on (PORT), unless set
WAGTAILADMIN_BASE_URL = os.environ.get(
    "WAGTAILADMIN_BASE_URL", f"http://localhost:{os.environ.get('PORT', '8000')}"
)
WAGTAILSEARCH_BACKENDS = {"default": {"BACKEND": "wagtail.search.backends.database"}}
# The demo runs offline: Wagtail's default avatar instead of a Gravatar request.
WAGTAIL_GRAVATAR_PROVIDER_URL = None

# Mail goes through the outbox (queued, sent by the django-q2 cluster, retried
# on failure), which hands it to a connector: here both are the sandbox ESP,
# which simulates delivery, bounces, complaints... (see wagtail_maillog/sandbox.py).
# To send for real, point the connectors at real anymail backends (and set their
# API keys in ANYMAIL). EMAIL_BACKEND=wagtail_maillog.sandbox.SandboxBackend in
# the environment sends at once, without the outbox.
EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND", "wagtail_maillog.outbox.backend.OutboxBackend")
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "Example Club <hello@example.com>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
ANYMAIL = {
    # Basic-auth "user:password" the ESP uses to call /anymail/<esp>/tracking/.
    "WEBHOOK_SECRET": os.environ.get("ANYMAIL_WEBHOOK_SECRET", "demo:demo-secret"),
}
WAGTAIL_MAILLOG = {
    # The demo keeps bodies, to show them (and resend). Never those of password
    # resets and confirmation requests; unsubscribe links in the others are cut.
    "STORE_BODY": True,
    # The sandbox needs no webhook; Postmark's URL answers, to try one by hand.
    "WEBHOOK_ESPS": ["postmark"],
    "SANDBOX_EVENT_DELAY": 5,
    # Two named connectors, so the outbox shows which one each mail goes through.
    "CONNECTORS": {
        "transactional": {"BACKEND": "wagtail_maillog.sandbox.SandboxBackend"},
        "newsletter": {"BACKEND": "wagtail_maillog.sandbox.SandboxBackend"},
    },
    "DEFAULT_CONNECTOR": "transactional",
    # Short, so the demo shows retries and a failure within minutes: attempt 2
    # 30 s after the first failure, attempt 3 60 s after the second, then failed.
    "RETRY_SCHEDULE": [30, 60, 120],
    "MAX_ATTEMPTS": 3,
    # The members' domains, counted on their own on the deliverability page.
    "DELIVERABILITY_DOMAINS": ["example.com", "example.org", "example.net"],
    # A demo sends little: mark a rate as crossed from 20 recipients on.
    "DELIVERABILITY_MIN_VOLUME": 20,
}

# django-q2 on the ORM broker: no Redis needed for the demo. It sends the outbox
# (a schedule every minute, and a task right after each send) and runs the
# sandbox's delayed events. "retry" must stay longer than "timeout".
Q_CLUSTER = {
    "name": "example",
    "orm": "default",
    "workers": 2,
    "timeout": 60,
    "retry": 120,
}
