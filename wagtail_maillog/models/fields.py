"""A JSONField for ESP payloads that keeps their keys in the order the ESP sent them.

Django's ``JSONField`` is ``jsonb`` on PostgreSQL, which stores a parsed form
and gives objects back with their keys reordered (shortest first), so a
payload no longer reads as the ESP sent it. :class:`PayloadJSONField` is a
``json`` column there: the text as written, key order and all (and an insert
is cheaper: ``json`` only checks the syntax). On other databases it is
Django's ``JSONField`` unchanged (SQLite and MariaDB keep the text already).

``json`` has none of ``jsonb``'s operators (``?``, ``@>``, ``=``): on
PostgreSQL no ``has_key``, ``contains`` or equality lookup works on these
fields, a key's included (``raw__type="bounce"``); reading a key
(``values("raw__type")``), a key's text lookups (``raw__type__iexact``) and
``isnull`` do. Nothing in wagtail-maillog queries into a payload.
"""

from __future__ import annotations

import json
from functools import partial
from typing import Any

from django.db import models

from .. import storable
from ..bulk import JSONText

try:  # the adapter that sends a value as ``json``, not ``jsonb``
    from psycopg.types.json import Json
except ImportError:  # pragma: no cover (psycopg 2)
    try:
        from psycopg2.extras import Json
    except ImportError:  # no PostgreSQL driver: the field never needs it
        Json = None


def as_json_text(value: Any, encoder: type[json.JSONEncoder] | None = None) -> str:
    """``value`` as JSON text that ``jsonb`` would take too.

    ``json`` stores ``"\\u0000"`` and lone surrogates (``"\\ud800"``), which
    ``jsonb`` refuses: each is stored as U+FFFD instead, as the webhook does
    (wagtail_maillog/webhooks.py). So a page showing the payload never meets a
    character it cannot encode, and migrating back to ``jsonb`` cannot fail.
    A :class:`~wagtail_maillog.bulk.JSONText` is JSON text already: not encoded again.
    """
    return storable.json_text(value if type(value) is JSONText else json.dumps(value, cls=encoder))


class PayloadJSONField(models.JSONField):
    """``JSONField`` stored as ``json`` on PostgreSQL (see the module's docstring)."""

    def db_type(self, connection: Any) -> str | None:
        if connection.vendor == "postgresql":
            return "json"
        return super().db_type(connection)

    def get_db_prep_value(self, value: Any, connection: Any, prepared: bool = False) -> Any:
        if connection.vendor != "postgresql":
            if type(value) is JSONText:
                return str(value)  # already JSON text (SQLite and MariaDB take text)
            return super().get_db_prep_value(value, connection, prepared)
        if not prepared:
            value = self.get_prep_value(value)
        return Json(value, dumps=partial(as_json_text, encoder=self.encoder))

    def select_format(self, compiler: Any, sql: str, params: Any) -> tuple[str, Any]:
        # psycopg parses ``json`` itself (it leaves ``jsonb`` to Django): read the
        # text, as Django reads ``jsonb``, so from_db_value decodes it in one place.
        if compiler.connection.vendor == "postgresql":
            return f"({sql})::text", params
        return super().select_format(compiler, sql, params)

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        if value is not None and not isinstance(value, str | bytes | bytearray):
            return value  # already parsed by the driver (a raw SQL query)
        return super().from_db_value(value, expression, connection)
