"""What a mailing says: its HTML and text, merge fields, and their ESP spelling.

Editors write merge fields one way, ``{{ name }}``, ``{{ email }}`` and
``{{ unsubscribe_url }}``. A mailing is either rendered here per recipient,
or handed to an ESP in chunks with per-recipient merge data; each ESP spells
merge fields its own way (``%recipient.name%`` at Mailgun, ``{{name}}`` at
SparkPost), so the neutral fields are rewritten in that spelling. HTML gets
escaped values (``name_html``), text and subject the plain ones.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html import escape as escape_text
from html import unescape
from typing import Any
from urllib.parse import urljoin

from django.conf import settings
from django.template.loader import render_to_string
from django.utils.html import escape
from wagtail.rich_text import expand_db_html

from ..conf import get_setting

FIELDS = ("name", "email", "unsubscribe_url")
FIELD = re.compile(r"\{\{\s*(" + "|".join(FIELDS) + r")\s*\}\}")
#: A merge field inside an href, as the rich text editor stores it.
_ESCAPED_FIELD = re.compile(r"%7B%7B\s*(" + "|".join(FIELDS) + r")\s*%7D%7D", re.IGNORECASE)
_URL_ATTRIBUTE = re.compile(r'(\s(?:href|src)=")(/[^/"][^"]*)"')
EMAIL_TEMPLATE = "wagtail_maillog/mailings/email.html"


@dataclass(frozen=True)
class Content:
    """A mailing's subject and bodies, with neutral merge fields still in them."""

    subject: str
    html: str
    text: str


def site_url() -> str:
    base = get_setting("PUBLIC_BASE_URL") or getattr(settings, "WAGTAILADMIN_BASE_URL", "")
    return base.rstrip("/")


def absolute_urls(html: str) -> str:
    """Site-relative links and images work in a mail client only as absolute URLs."""
    base = site_url() + "/"
    return _URL_ATTRIBUTE.sub(lambda m: f'{m.group(1)}{urljoin(base, m.group(2))}"', html)


def _page_html(page: Any) -> str:
    response = page.specific.make_preview_request()
    if hasattr(response, "render"):
        response.render()
    return response.content.decode(response.charset or "utf-8")


def build(mailing: Any) -> Content:
    """The mailing's content, with merge fields left in for the sender to fill."""
    if mailing.page_id:
        inner = _page_html(mailing.page)
        html = inner
    else:
        inner = expand_db_html(mailing.body or "")
        html = render_to_string(
            EMAIL_TEMPLATE,
            {
                "mailing": mailing,
                "body": inner,
                "unsubscribe_field": "{{ unsubscribe_url }}",
                "site_name": getattr(settings, "WAGTAIL_SITE_NAME", ""),
            },
        )
    html = _ESCAPED_FIELD.sub(lambda m: "{{ " + m.group(1) + " }}", absolute_urls(html))
    if not any(m.group(1) == "unsubscribe_url" for m in FIELD.finditer(html)):
        html += '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>'
    return Content(subject=mailing.subject, html=html, text=html_to_text(html))


def html_to_text(html: str) -> str:
    """A readable plain-text part: paragraphs kept, links written out, tags dropped."""
    body = re.sub(r"(?is)<(head|style|script|title)\b.*?</\1>", "", html)
    body = re.sub(
        r'(?is)<a\s[^>]*href="([^"]*)"[^>]*>(.*?)</a>',
        lambda m: _link_text(m.group(2), m.group(1)),
        body,
    )
    body = re.sub(r"(?i)<br\s*/?>", "\n", body)
    body = re.sub(r"(?i)<li\b[^>]*>", "\n- ", body)
    body = re.sub(r"(?i)</(p|div|h[1-6]|ul|ol|li|tr|table|blockquote)>", "\n\n", body)
    body = unescape(re.sub(r"<[^>]+>", "", body))
    lines = [line.strip() for line in body.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"


def _link_text(label: str, url: str) -> str:
    text = re.sub(r"<[^>]+>", "", label).strip()
    url = unescape(url)
    return url if not text or text == url else f"{text} ({url})"


def fill(template: str, values: dict[str, str], html: bool = False) -> str:
    """Put one recipient's values into the neutral merge fields."""

    def value(match: re.Match[str]) -> str:
        found = values.get(match.group(1), "")
        return escape(found) if html else found

    return FIELD.sub(value, template)


def for_esp(template: str, spelling: str, html: bool = False) -> str:
    """Rewrite neutral merge fields in an ESP's spelling, e.g. ``%recipient.{}%``."""
    suffix = "_html" if html else ""
    return FIELD.sub(lambda m: spelling.format(m.group(1) + suffix), template)


def merge_values(values: dict[str, str]) -> dict[str, str]:
    """One recipient's merge data: plain values, and escaped ones for the HTML part.

    The standard library's ``html.escape`` gives the text Django's ``escape`` gives,
    without its lazy-string wrapper (a mailing escapes three values per member).
    """
    return {**values, **{f"{k}_html": escape_text(v) for k, v in values.items()}}
