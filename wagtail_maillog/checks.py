"""Django system checks: configuration mistakes said early, with the fix."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.core.mail.backends.base import BaseEmailBackend
from django.utils.module_loading import import_string

from .conf import get_setting

OUTBOX_BACKEND = "wagtail_maillog.outbox.backend.OutboxBackend"
#: Where the docs are read from an installed package (docs/ is not in the wheel).
DOCS_URL = "https://github.com/wagtail-maillog/wagtail-maillog/blob/main/docs/"


def _uses_outbox() -> bool:
    """The outbox is the site's default backend (EMAIL_BACKEND, or Django 6.1's MAILERS)."""
    mailers = getattr(settings, "MAILERS", None) or {}
    default = mailers.get("default", {}) if isinstance(mailers, dict) else {}
    if isinstance(default, dict) and default.get("BACKEND") == OUTBOX_BACKEND:
        return True
    return getattr(settings, "EMAIL_BACKEND", "") == OUTBOX_BACKEND


#: Settings an ESP's webhook view reads only when a POST comes (anymail defers
#: them so the ESP's HEAD check of the URL works): {ESP: anymail setting}.
DEFERRED_WEBHOOK_SETTINGS = {"mandrill": "webhook_key"}


def _served_tracking_views() -> list[tuple[str, Any, Exception | None]]:
    """(ESP, view object or None, why it cannot be built) for each tracking URL that answers.

    Only URLs that are mounted (reversible) count: a site that receives no
    webhooks needs no signing keys.
    """
    import warnings

    from anymail.utils import get_anymail_setting

    from .webhook_urls import served_tracking
    from .webhooks import view_esp

    found: dict[str, tuple[str, Any, Exception | None]] = {}
    for pattern, _path in served_tracking():
        view_class = pattern.callback.view_class
        esp = view_esp(view_class)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # anymail's insecure-webhook warning: W001's
                view = view_class(**pattern.callback.view_initkwargs)
            if esp in DEFERRED_WEBHOOK_SETTINGS:
                get_anymail_setting(
                    DEFERRED_WEBHOOK_SETTINGS[esp],
                    esp_name=view_class.esp_name,
                    allow_bare=True,
                    kwargs={},
                )
        except Exception as exc:  # a missing setting or package, or a key anymail cannot read
            found[esp] = (esp, None, exc)
        else:
            found[esp] = (esp, view, None)
    return list(found.values())


@register()
def check_webhooks(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """The webhook URLs that answer can be built, and are protected."""
    from .webhooks import known_esps

    messages: list[Any] = []
    wanted = get_setting("WEBHOOK_ESPS")
    names = [wanted] if isinstance(wanted, str) else wanted
    if wanted is not None and not (
        isinstance(names, list | tuple | set | frozenset) and all(isinstance(n, str) for n in names)
    ):
        return [
            Error(
                f'WAGTAIL_MAILLOG["WEBHOOK_ESPS"] must be a list of ESP names or "all", '
                f"not {wanted!r}.",
                hint='E.g. WAGTAIL_MAILLOG["WEBHOOK_ESPS"] = ["postmark"].',
                id="wagtail_maillog.E005",
            )
        ]
    if names is not None:
        from .webhooks import esp_key

        known = known_esps()
        unknown = [n for n in names if n.strip().lower() != "all" and esp_key(n) not in known]
        if unknown:
            messages.append(
                Error(
                    f'WAGTAIL_MAILLOG["WEBHOOK_ESPS"] names {", ".join(map(repr, unknown))}: '
                    "anymail has no webhooks for that ESP, so its events would be refused (404).",
                    hint=f'Use anymail\'s names: {", ".join(sorted(known))} (or "all").',
                    id="wagtail_maillog.E005",
                )
            )
    views = _served_tracking_views()
    for esp, _view, error in views:
        if error is not None:
            messages.append(
                Error(
                    f"The {esp} webhook answers, but anymail cannot build its view: {error}",
                    hint="Add the missing setting or package, or set "
                    'WAGTAIL_MAILLOG["WEBHOOK_ESPS"] without this ESP. Until then every POST '
                    "to it fails with HTTP 500.",
                    id="wagtail_maillog.E004",
                )
            )
    # anymail's own rule: an ESP that signs its requests (and is told the key) needs no secret.
    open_to_all = sorted(
        esp
        for esp, view, _error in views
        if view is not None and view.warn_if_no_basic_auth and not view.basic_auth
    )
    if open_to_all:
        messages.append(
            Warning(
                "ANYMAIL['WEBHOOK_SECRET'] is not set: anyone could post delivery events "
                f"to the webhooks of {', '.join(open_to_all)}.",
                hint='Set ANYMAIL = {"WEBHOOK_SECRET": "user:long-random-secret"} and put the '
                "same user:secret in your ESP's webhook URL.",
                id="wagtail_maillog.W001",
            )
        )
    return messages


@register()
def check_connectors(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    messages: list[Any] = []
    connectors = get_setting("CONNECTORS") or {}
    for name, spec in connectors.items():
        path = spec.get("BACKEND") if isinstance(spec, dict) else None
        try:
            backend = import_string(path) if path else None
        except ImportError as exc:
            backend, error = None, exc
        else:
            error = None
        if backend is None or not (
            isinstance(backend, type) and issubclass(backend, BaseEmailBackend)
        ):
            messages.append(
                Error(
                    f"Connector {name!r}: BACKEND {path!r} is not an email backend"
                    + (f" ({error})" if error else ""),
                    hint="Use an anymail backend (anymail.backends.<esp>.EmailBackend) or a "
                    "Django email backend.",
                    id="wagtail_maillog.E002",
                )
            )
        elif _batches_without_unsubscribe_headers(spec):
            messages.append(
                Warning(
                    f"Connector {name!r}: mailings go out one message per member, not in "
                    "batches: its backend cannot give each member of a batch their own "
                    "one-click List-Unsubscribe headers (anymail's merge_headers).",
                    hint='If it can, set "MAILING": {"MERGE_HEADERS": True} on the '
                    "connector; else this is only slower. See "
                    f"{DOCS_URL}mailings.md#sending.",
                    id="wagtail_maillog.W009",
                )
            )
        elif path == OUTBOX_BACKEND:
            messages.append(
                Error(
                    f"Connector {name!r} points at the outbox itself.",
                    hint="A connector is the real backend the outbox sends through.",
                    id="wagtail_maillog.E003",
                )
            )
    if _uses_outbox():
        default = get_setting("DEFAULT_CONNECTOR")
        if default not in connectors:
            messages.append(
                Error(
                    "The outbox is the email backend, but it has no connector "
                    f"named {default!r} to send through.",
                    hint='Add WAGTAIL_MAILLOG["CONNECTORS"] = {"default": {"BACKEND": '
                    '"anymail.backends.<esp>.EmailBackend"}}.',
                    id="wagtail_maillog.E001",
                )
            )
        if not getattr(settings, "Q_CLUSTER", None):
            messages.append(
                Warning(
                    "The outbox is the email backend, but Q_CLUSTER is not configured: "
                    "nothing will send the queued mail.",
                    hint='Add Q_CLUSTER = {"name": "mail", "orm": "default"} and run '
                    "manage.py qcluster.",
                    id="wagtail_maillog.W002",
                )
            )
    return messages


def _batches_without_unsubscribe_headers(spec: dict[str, Any]) -> bool:
    """A connector that would batch mailings (a merge field spelling) but cannot send
    per-recipient headers, so mailings fall back to one message per member."""
    from .mailings.batching import MERGE_FIELD_SPELLINGS, sends_merge_headers

    own = spec.get("MAILING") or {}
    batching = own.get("MERGE_FIELD", MERGE_FIELD_SPELLINGS.get(spec["BACKEND"]))
    if not batching or int(own.get("BATCH_SIZE", 2)) <= 1 or "MERGE_HEADERS" in own:
        return False
    return not sends_merge_headers(spec["BACKEND"])


@register()
def check_retention(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    if get_setting("RETENTION_DAYS") is None:
        return [
            Warning(
                "Mail log retention is off (RETENTION_DAYS is None): history grows forever, "
                "with personal data in it.",
                hint='Set WAGTAIL_MAILLOG["RETENTION_DAYS"] to the days you must keep.',
                id="wagtail_maillog.W003",
            )
        ]
    return []


@register()
def check_confirmation_links(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    from django.urls import NoReverseMatch, reverse

    messages: list[Any] = []
    if not (get_setting("PUBLIC_BASE_URL") or getattr(settings, "WAGTAILADMIN_BASE_URL", "")):
        messages.append(
            Warning(
                "Confirmation links will have no host: neither "
                'WAGTAIL_MAILLOG["PUBLIC_BASE_URL"] nor WAGTAILADMIN_BASE_URL is set.',
                hint='Set WAGTAILADMIN_BASE_URL = "https://www.example.com".',
                id="wagtail_maillog.W004",
            )
        )
    try:
        reverse("wagtail_maillog_public:confirm", args=["x"])
    except NoReverseMatch:
        messages.append(
            Warning(
                "The public confirmation page is not mounted: confirmation requests "
                "cannot be sent.",
                hint='Add path("mail/", include("wagtail_maillog.public_urls")) to urls.py.',
                id="wagtail_maillog.W005",
            )
        )
    return messages


#: The migration that adds the PostgreSQL trigram indexes of the search.
SEARCH_INDEXES_MIGRATION = "0005_search_trigram_indexes"


def missing_search_indexes(connection: Any) -> list[str]:
    """The search's trigram indexes that do not exist (or failed to build) on ``connection``."""
    from importlib import import_module

    migration = import_module(f"wagtail_maillog.migrations.{SEARCH_INDEXES_MIGRATION}")
    wanted = [name for name, _table, _expression in migration.INDEXES]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid "
            "WHERE c.relname = ANY(%s) AND i.indisvalid",
            [wanted],
        )
        present = {row[0] for row in cursor.fetchall()}
    return [name for name in wanted if name not in present]


@register(Tags.database)
def check_search_indexes(
    app_configs: Any = None, databases: Any = None, **kwargs: Any
) -> list[Any]:
    """On PostgreSQL, the trigram indexes of migration 0005 exist (the search's speed)."""
    from django.db import connections
    from django.db.migrations.recorder import MigrationRecorder

    messages: list[Any] = []
    for alias in databases or []:
        connection = connections[alias]
        if connection.vendor != "postgresql":
            continue
        applied = MigrationRecorder(connection).applied_migrations()
        if ("wagtail_maillog", SEARCH_INDEXES_MIGRATION) not in applied:
            continue  # not migrated yet: the migration will create them
        missing = missing_search_indexes(connection)
        if missing:
            messages.append(
                Warning(
                    f"Database {alias!r}: the mail log's trigram search indexes are missing "
                    f"({', '.join(missing)}): searching for part of an address or subject "
                    "reads the whole log.",
                    hint="As a PostgreSQL superuser, run CREATE EXTENSION pg_trgm; in the "
                    "database, then: manage.py migrate wagtail_maillog 0004 && manage.py "
                    "migrate wagtail_maillog.",
                    id="wagtail_maillog.W006",
                )
            )
    return messages


def _in_memory(name: Any) -> bool:
    return str(name) == ":memory:" or "mode=memory" in str(name)


@register()
def check_sqlite_settings(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """SQLite files shared by web requests, webhooks and the worker need to wait for the lock.

    Reads the live connection settings (a test run's in-memory database is
    skipped: one process, nothing to wait for).
    """
    from django.db import connections

    messages: list[Any] = []
    if _effective_backend()[1] != OUTBOX_BACKEND:
        # without the outbox no worker writes beside the web requests: SQLite's defaults do
        return messages
    for alias in connections:
        settings_dict = connections.settings[alias]
        if settings_dict.get("ENGINE") != "django.db.backends.sqlite3":
            continue
        if _in_memory(connections[alias].settings_dict.get("NAME")):
            continue
        options = settings_dict.get("OPTIONS") or {}
        if (options.get("transaction_mode") or "").upper() == "IMMEDIATE" and float(
            options.get("timeout", 5)
        ) >= 10:
            continue
        messages.append(
            Warning(
                f"SQLite database {alias!r}: without OPTIONS transaction_mode 'IMMEDIATE' and "
                "a timeout of 10 s or more, a webhook or the outbox worker can fail with "
                "'database is locked' while another writes (answered 503, retried later).",
                hint='Set "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 20, '
                '"init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL"} '
                f"({DOCS_URL}installation.md#sqlite-with-the-outbox-worker).",
                id="wagtail_maillog.W007",
            )
        )
    return messages


def _effective_backend() -> tuple[str, str]:
    """(the setting that decides, dotted path): Django 6.1's MAILERS["default"] wins."""
    mailers = getattr(settings, "MAILERS", None) or {}
    default = mailers.get("default", {}) if isinstance(mailers, dict) else {}
    if isinstance(default, dict) and default.get("BACKEND"):
        return 'MAILERS["default"]["BACKEND"]', str(default["BACKEND"])
    return "EMAIL_BACKEND", str(getattr(settings, "EMAIL_BACKEND", "") or "")


def _where_set(name: str, value: str) -> str:
    """Where the settings modules tell, which module set ``value`` and which it overrides
    (``wagtail start`` sets the console backend in dev.py, over base.py's)."""
    import sys

    if name != "EMAIL_BACKEND":
        return ""
    module_name = getattr(settings, "SETTINGS_MODULE", None) or ""
    module = sys.modules.get(module_name)
    if module is None or getattr(module, name, None) != value:
        return ""
    package = module_name.rpartition(".")[0]
    overridden = [
        (other, getattr(sys.modules[other], name))
        for other in sorted(sys.modules)
        if package
        and other.startswith(package + ".")
        and other != module_name
        and isinstance(getattr(sys.modules[other], name, None), str)
        and getattr(sys.modules[other], name) != value
    ]
    where = f" (set in {module_name}"
    if overridden:
        where += ", which wins over " + ", ".join(f"{v!r} of {m}" for m, v in overridden)
    return where + ")"


@register()
def check_recording_backend(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """The mail backend the site really uses records what it sends.

    Only anymail's backends send the ``pre_send``/``post_send`` signals the mail log
    records from, and the outbox records mail itself; Django's console, file, locmem
    and SMTP backends send none, so with them the log stays empty without a word.
    """
    from anymail.backends.base import AnymailBaseBackend

    name, path = _effective_backend()
    if not path or path == OUTBOX_BACKEND:
        return []
    try:
        backend = import_string(path)
    except ImportError:
        return []  # Django reports an unimportable backend when mail is sent
    if isinstance(backend, type) and issubclass(backend, AnymailBaseBackend):
        return []
    return [
        Warning(
            f"{name} is {path!r}{_where_set(name, path)}: mail sent through it is not "
            "recorded in the mail log (only anymail's backends and the outbox record mail).",
            hint='For development use "anymail.backends.console.EmailBackend" (prints the '
            "mail like Django's console backend, and records it); otherwise an anymail "
            'backend ("anymail.backends.<esp>.EmailBackend") or the outbox '
            f'("{OUTBOX_BACKEND}", whose connectors may be any backend, SMTP too). '
            f"See {DOCS_URL}installation.md.",
            id="wagtail_maillog.W008",
        )
    ]
