"""Settings for the test suite. The database comes from ``MAILLOG_TEST_DB``:
``sqlite`` (default), ``postgres`` or ``mysql`` (see scripts/test)."""

import os

BASE_DIR = os.path.dirname(os.path.abspath(__file__))
SECRET_KEY = "tests-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
TIME_ZONE = "UTC"

INSTALLED_APPS = [
    "wagtail_maillog",
    "tests.testapp",
    "anymail",
    "django_q",
    "django_tables2",
    "django_filters",
    "wagtail.contrib.forms",
    "wagtail.contrib.settings",
    "wagtail.users",
    "wagtail.snippets",
    "wagtail.documents",
    "wagtail.images",
    "wagtail.search",
    "wagtail.admin",
    "wagtail",
    "modelcluster",
    "taggit",
    "django.contrib.admin",
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
    "wagtail_maillog.middleware.MailLogUserMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "tests.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.debug",
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

_db = os.environ.get("MAILLOG_TEST_DB", "sqlite")
if _db == "postgres":
    INSTALLED_APPS.append("django.contrib.postgres")  # Wagtail's search index needs it
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ.get("MAILLOG_PG_NAME", "test"),
            "HOST": os.environ.get("MAILLOG_PG_HOST", "127.0.0.1"),
            "PORT": os.environ.get("MAILLOG_PG_PORT", "5432"),
            "USER": os.environ.get("MAILLOG_PG_USER", "postgres"),
            "PASSWORD": os.environ.get("MAILLOG_PG_PASSWORD", "postgres"),
            "TEST": {"NAME": "test_wagtail_maillog" + os.environ.get("MAILLOG_TEST_DB_SUFFIX", "")},
        }
    }
elif _db == "mysql":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.mysql",
            "NAME": os.environ.get("MAILLOG_MYSQL_NAME", "test"),
            "HOST": os.environ.get("MAILLOG_MYSQL_HOST", "127.0.0.1"),
            "USER": os.environ.get("MAILLOG_MYSQL_USER", "root"),
            "PASSWORD": os.environ.get("MAILLOG_MYSQL_PASSWORD", ""),
            "PORT": os.environ.get("MAILLOG_MYSQL_PORT", "3306"),
            # utf8mb4 for every character (emoji, astral scripts); READ COMMITTED
            # (Django's default since 2.0) so a worker sees rows others committed.
            "OPTIONS": {"charset": "utf8mb4", "isolation_level": "read committed"},
            "TEST": {
                "NAME": "test_wagtail_maillog" + os.environ.get("MAILLOG_TEST_DB_SUFFIX", ""),
                "CHARSET": "utf8mb4",
            },
        }
    }
elif os.environ.get("MAILLOG_SQLITE_PATH"):
    # A file several processes share: the server and workers of tests/test_load.py.
    # WAL lets readers run beside the one writer; IMMEDIATE takes the write lock
    # when a transaction starts (a read that later writes cannot be refused
    # halfway), and the timeout is how long a writer waits for the lock.
    # MAILLOG_SQLITE_TRANSACTION_MODE=DEFERRED gives Django's default instead.
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ["MAILLOG_SQLITE_PATH"],
            "OPTIONS": {
                "timeout": float(os.environ.get("MAILLOG_SQLITE_TIMEOUT", "20")),
                "transaction_mode": os.environ.get("MAILLOG_SQLITE_TRANSACTION_MODE", "IMMEDIATE"),
                "init_command": os.environ.get(
                    "MAILLOG_SQLITE_INIT", "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL"
                ),
            },
        }
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.path.join(BASE_DIR, "test.sqlite3"),
            # Tests use an in-memory database of their own (no clash between runs).
        }
    }

STATIC_URL = "/static/"
STATIC_ROOT = os.path.join(BASE_DIR, "static")
MEDIA_ROOT = os.path.join(BASE_DIR, "media")
MEDIA_URL = "/media/"
WAGTAIL_SITE_NAME = "wagtail-maillog tests"
WAGTAILADMIN_BASE_URL = "http://testserver"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

EMAIL_BACKEND = "anymail.backends.test.EmailBackend"
DEFAULT_FROM_EMAIL = "site@example.com"
ANYMAIL = {
    "WEBHOOK_SECRET": "hook:secret",
    "POSTMARK_SERVER_TOKEN": "unused",
    # The keys of the ESPs whose anymail webhook cannot run without one
    # (tests/test_hostile_webhooks.py signs with them; it makes Postal's).
    # Basic auth stays on for every ESP.
    "MAILGUN_WEBHOOK_SIGNING_KEY": "mailgun-test-signing-key",
    "MAILERSEND_SIGNING_SECRET": "mailersend-test-signing-secret",
    "MANDRILL_WEBHOOK_KEY": "mandrill-test-webhook-key",
    "UNISENDER_GO_API_KEY": "unisender-go-test-api-key",
    # Replaced by a key made per run in tests/test_hostile_webhooks.py.
    "POSTAL_WEBHOOK_KEY": "postal-test-public-key",
}
# The ESPs whose webhooks the tests post to (a site's would come from its backends):
# every other /anymail/<esp>/ URL answers 404.
WEBHOOK_ESPS = [
    "amazon_ses",
    "brevo",  # and its old name, sendinblue
    "mailersend",
    "mailgun",
    "mailjet",
    "mailtrap",
    "mandrill",
    "postal",
    "postmark",
    "resend",
    "sendgrid",
    "sparkpost",
    "unisender_go",
]
WAGTAIL_MAILLOG = {"WEBHOOK_ESPS": WEBHOOK_ESPS}

# In-process by default; the tests' subprocess workers set MAILLOG_Q_BROKER=redis.
Q_CLUSTER = {"name": "maillog-tests", "sync": True, "workers": 1, "timeout": 60, "retry": 120}
if os.environ.get("MAILLOG_Q_BROKER") == "redis":
    Q_CLUSTER |= {
        "sync": False,
        "workers": 2,
        "redis": os.environ.get("MAILLOG_REDIS_URL", "redis://127.0.0.1:6379/0"),
    }
else:
    Q_CLUSTER["orm"] = "default"
    if os.environ.get("MAILLOG_Q_BROKER") == "orm":  # a real cluster on a shared SQLite file
        Q_CLUSTER |= {"sync": False, "workers": 2, "poll": 0.1}

# Nothing in the tests may reach the internet.
WAGTAIL_ENABLE_UPDATE_CHECK = False
WAGTAIL_GRAVATAR_PROVIDER_URL = None

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# Subprocess workers of the outbox tests send through the scripted test ESP.
if os.environ.get("MAILLOG_TEST_OUTBOX"):
    EMAIL_BACKEND = "wagtail_maillog.outbox.backend.OutboxBackend"
    WAGTAIL_MAILLOG = {
        "WEBHOOK_ESPS": WEBHOOK_ESPS,
        "CONNECTORS": {
            "default": {
                "BACKEND": os.environ.get("MAILLOG_TEST_ESP", "tests.esp.ScriptedBackend"),
                # mailings go out in batches of 4 with anymail's test-backend merge fields
                "MAILING": {
                    "BATCH_SIZE": int(os.environ.get("MAILLOG_TEST_MAILING_BATCH", "4")),
                    "MERGE_FIELD": "{{{{{}}}}}",
                },
            }
        },
        "LEASE_SECONDS": 300,
        "OUTBOX_BATCH": 5,
    }
    Q_CLUSTER["name"] = os.environ.get("MAILLOG_Q_NAME", Q_CLUSTER["name"])

if os.environ.get("MAILLOG_LOG_STDERR"):
    # Subprocess servers and workers (tests/test_load.py): warnings and errors, with
    # their tracebacks, to stderr (with DEBUG off Django would print no 500 at all).
    LOGGING = {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"stderr": {"class": "logging.StreamHandler"}},
        "root": {"handlers": ["stderr"], "level": "WARNING"},
    }
