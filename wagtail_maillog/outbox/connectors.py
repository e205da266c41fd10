"""Named connectors: the real backends mail leaves through, and their on/off state."""

from __future__ import annotations

import functools
from typing import Any

from anymail.backends.base import AnymailBaseBackend
from django.core.exceptions import ImproperlyConfigured
from django.db.models import CharField
from django.db.models.expressions import RawSQL
from django.utils import timezone
from django.utils.module_loading import import_string

from ..conf import get_setting
from ..models.outbox import SendState


def configured() -> dict[str, dict[str, Any]]:
    """The ``CONNECTORS`` setting, checked."""
    connectors = get_setting("CONNECTORS") or {}
    for name, spec in connectors.items():
        if not isinstance(spec, dict) or "BACKEND" not in spec:
            raise ImproperlyConfigured(
                f'WAGTAIL_MAILLOG["CONNECTORS"][{name!r}] needs a "BACKEND" (a dotted path '
                "to an email backend, e.g. anymail.backends.postmark.EmailBackend)"
            )
    return connectors


def default_name() -> str:
    return get_setting("DEFAULT_CONNECTOR")


def resolve(name: str | None) -> str:
    """The connector a message goes through: its own if known, else the default."""
    connectors = configured()
    if name and name in connectors:
        return name
    default = default_name()
    if default not in connectors:
        raise ImproperlyConfigured(
            f'WAGTAIL_MAILLOG["DEFAULT_CONNECTOR"] is {default!r}, but CONNECTORS has only '
            f"{sorted(connectors)}: add it to CONNECTORS"
        )
    return default


def open_connection(name: str) -> Any:
    spec = configured()[name]
    # The backend class itself, as get_connection() would build it: that function is
    # deprecated in Django 6.1 and refuses to work once MAILERS is configured.
    backend = import_string(spec["BACKEND"])
    return backend(fail_silently=False, **spec.get("OPTIONS", {}))


def esp_name(name: str) -> str:
    """The ESP name anymail gives connector ``name``'s backend ("Postmark"; "" for
    other backends, and for a connector gone from the settings)."""
    try:
        backend = import_string(configured()[name]["BACKEND"])
    except Exception:  # a connector gone from the settings: its hand-over fails and says so
        return ""
    if isinstance(backend, type) and issubclass(backend, AnymailBaseBackend):
        return str(getattr(backend, "esp_name", "") or "")[:64]
    return ""


def enabled_names() -> set[str]:
    """Connectors that may send now: on in settings, and not switched off in the admin.

    A connector switched off in settings stays off whatever the admin says.
    """
    from ..models import ConnectorState

    off = set(ConnectorState.objects.filter(enabled=False).values_list("name", flat=True))
    return {
        name for name, spec in configured().items() if spec.get("ENABLED", True) and name not in off
    }


def is_enabled(name: str) -> bool:
    return name in enabled_names()


def queued_state(name: str) -> Any:
    """The state of mail queued now for connector ``name``, as a value for its INSERT.

    Off in settings: "connector disabled". Else an expression the INSERT itself
    evaluates against the admin's switch (:class:`ConnectorState`), so queueing reads
    no connector state of its own, and a switch in the admin counts from the next
    INSERT on, in every process, with nothing cached. The worker checks the switch
    again before each run (``worker.process_outbox`` parks and releases mail, and
    claims only mail of enabled connectors): this state is what the outbox shows
    until then, not what decides whether mail leaves.
    """
    from django.db import router

    from ..models import ConnectorState

    if not configured()[name].get("ENABLED", True):
        return SendState.CONNECTOR_DISABLED
    return _switched_state(name, router.db_for_read(ConnectorState))


@functools.cache
def _switched_state(name: str, alias: str) -> SwitchedState:
    """One :class:`SwitchedState` per connector and database, shared by every INSERT
    (nothing changes it): building a ``RawSQL`` and its ``CharField`` for each mail
    was 3 % of a ``send()`` on SQLite."""
    return SwitchedState(name, alias)


class SwitchedState(RawSQL):
    """The state of queued mail as the INSERT reads it: "queued", or "connector
    disabled" while the admin's switch of the connector is off (PostgreSQL's
    ``wagtail_maillog_record_one`` reads the switch itself, given ``on`` and ``off``).
    Raw SQL: a queryset expression cost more to compile, for each mail, than the
    query it saves."""

    on = SendState.QUEUED.value
    off = SendState.CONNECTOR_DISABLED.value

    def __init__(self, name: str, alias: str) -> None:
        super().__init__(_switch_sql(alias), (name, False, self.off, self.on), CharField())


@functools.cache
def _switch_sql(alias: str) -> str:
    from django.db import connections

    from ..models import ConnectorState

    quote = connections[alias].ops.quote_name
    return (
        f"CASE WHEN EXISTS (SELECT 1 FROM {quote(ConnectorState._meta.db_table)} "
        f"WHERE {quote('name')} = %s AND {quote('enabled')} = %s) THEN %s ELSE %s END"
    )


def set_enabled(name: str, enabled: bool, user: Any = None) -> int:
    """Switch a connector on or off; returns how many waiting mails changed state."""
    from ..models import ConnectorState
    from .parking import park_disabled, release_enabled  # models: not at import time

    if name not in configured():
        raise ImproperlyConfigured(f"No connector named {name!r}")
    ConnectorState.objects.update_or_create(
        name=name,
        defaults={"enabled": enabled, "changed_at": timezone.now(), "changed_by": user},
    )
    now, on = timezone.now(), enabled_names()
    return release_enabled(on, now) if enabled else park_disabled(on, now)
