"""What each recipient of a batch received: the message's merge fields filled in.

anymail sends a message with ``merge_data`` as a batch: one ESP call, and the
ESP fills each recipient's values into the merge fields of the subject and
body. The log keeps the message once, as sent to the ESP (with its fields,
e.g. ``%recipient.name%``), and for each recipient the values they got
(:func:`values_to_keep`: one-time tokens redacted, as in stored bodies). The
spelling of the fields is recorded on the message when it is known (a
mailing's connector says it), so the admin shows each recipient the subject
and body they received (:func:`fill`), never a placeholder.
"""

from __future__ import annotations

import re
from functools import lru_cache
from html import escape
from typing import Any

from . import storable
from .redaction import redact

#: Set on an ``EmailMessage`` (by mailings) to the ESP's spelling of a merge field,
#: ``str.format`` style: ``"%recipient.{}%"`` for Mailgun, ``"{{{{{}}}}}"`` for ``{{name}}``.
MERGE_FIELD_ATTRIBUTE = "_maillog_merge_field"
HTML_SUFFIX = "_html"


def values_to_keep(values: Any) -> dict[str, str] | None:
    """One recipient's merge values as the log keeps them, or None if there are none.

    Tokens are redacted; an ``x_html`` value that is just ``x`` escaped is left out
    (:func:`fill` derives it), which halves what a 100,000-member batch stores.
    """
    if not isinstance(values, dict) or not values:
        return None
    kept = {str(k): redact(str(v)) for k, v in values.items()}
    for key in [k for k in kept if k.endswith(HTML_SUFFIX)]:
        plain = kept.get(key[: -len(HTML_SUFFIX)])
        if plain is not None and kept[key] == escape(plain):
            del kept[key]
    return storable.json_value(kept)


@lru_cache(maxsize=32)
def _pattern(spelling: str) -> re.Pattern[str]:
    prefix, _, suffix = spelling.format("\0").partition("\0")
    return re.compile(re.escape(prefix) + r"\s*([A-Za-z0-9_.-]+?)\s*" + re.escape(suffix))


def fill(
    template: str, spelling: str | None, values: dict[str, str] | None, html: bool = False
) -> str:
    """``template`` with the recipient's ``values`` in its merge fields.

    A field without a value stays as it was sent. In HTML, a plain value is escaped
    (an ``x_html`` value is used as given: it was made for the HTML part).
    """
    if not template or not spelling or not values:
        return template

    def value(match: re.Match[str]) -> str:
        key = match.group(1)
        if key in values:
            found = values[key]
            return escape(found) if html and not key.endswith(HTML_SUFFIX) else found
        plain = key[: -len(HTML_SUFFIX)] if key.endswith(HTML_SUFFIX) else None
        if plain is not None and plain in values:
            return escape(values[plain])
        return match.group(0)

    return _pattern(spelling).sub(value, template)
