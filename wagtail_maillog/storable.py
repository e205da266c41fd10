"""Values as every supported database stores them.

Text from a sending site or an ESP may hold what one of the databases refuses,
though Python and ``json`` take it: NUL (PostgreSQL's text and ``jsonb``) and
lone UTF-16 surrogates (``"\\ud800"``: not UTF-8, so no database takes them).
MariaDB keeps JSON as text under ``CHECK (JSON_VALID(...))``, which also refuses
NaN, infinities and nesting of 32 levels or more. A write that fails on such a
value would fail however often it is retried: the mail would not be recorded
(or not sent at all), the ESP's event never stored. So what is written is
cleaned first, the same way on every database: U+FFFD for each refused
character, NaN and infinities as text, on MariaDB each object or array nested
too deep as its JSON text.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from django.db import connections

#: What text columns (and JSON strings) cannot hold on some supported database.
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
#: The same in JSON text, as ``json.dumps`` escapes them (an emoji gives a valid pair,
#: which matches too: :func:`json_text` then decodes to tell).
ESCAPED_UNSTORABLE = re.compile(r"\\u(?:0000|d[89a-f])", re.IGNORECASE)
#: MariaDB's JSON_VALID refuses objects and arrays nested deeper than this.
MARIADB_JSON_DEPTH = 31


def text(value: str) -> str:
    """``value`` with U+FFFD for each character a database refuses."""
    return UNSTORABLE.sub("\ufffd", value)


def json_text(text: str) -> str:
    """JSON text (``json.dumps``'s) as every database stores it: decoded and cleaned
    only when it may hold an escaped NUL or lone surrogate."""
    if ESCAPED_UNSTORABLE.search(text):
        return json.dumps(_clean(json.loads(text), None, 0))
    return text


def json_value(value: Any, using: str | None = "default", *, max_depth: int | None = None) -> Any:
    """``value`` (a JSON structure) as every database stores it.

    Nesting is limited on MariaDB (the database of ``using``) or to ``max_depth``;
    values that are not JSON (a ``datetime`` in an anymail event) pass unchanged.
    """
    if max_depth is None and using is not None and connections[using].vendor == "mysql":
        max_depth = MARIADB_JSON_DEPTH
    return _clean(value, max_depth, 0)


def _clean(value: Any, max_depth: int | None, depth: int) -> Any:
    if isinstance(value, str):
        return UNSTORABLE.sub("\ufffd", value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict | list | tuple):
        if max_depth is not None and depth >= max_depth:
            return _clean(json.dumps(value, default=str), None, 0)
        if isinstance(value, dict):
            return {_clean(k, None, 0): _clean(v, max_depth, depth + 1) for k, v in value.items()}
        return [_clean(v, max_depth, depth + 1) for v in value]
    return value
