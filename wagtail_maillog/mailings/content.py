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

from anymail.exceptions import AnymailInvalidAddress
from anymail.utils import parse_address_list
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.core.validators import validate_email
from django.template.loader import render_to_string
from django.utils.html import escape
from django.utils.translation import gettext as _
from wagtail.models import PageViewRestriction
from wagtail.permission_policies.pages import PagePermissionPolicy
from wagtail.rich_text import expand_db_html

from ..conf import get_setting

FIELDS = ("name", "email", "unsubscribe_url")
FIELD = re.compile(r"\{\{\s*(" + "|".join(FIELDS) + r")\s*\}\}")
#: A merge field inside an href, as the rich text editor stores it.
_ESCAPED_FIELD = re.compile(r"%7B%7B\s*(" + "|".join(FIELDS) + r")\s*%7D%7D", re.IGNORECASE)
#: A site-relative link or image: ``/`` or ``/path``, not protocol-relative ``//host``.
_URL_ATTRIBUTE = re.compile(r'(\s(?:href|src)=")(/(?!/)[^"]*)"')
EMAIL_TEMPLATE = "wagtail_maillog/mailings/email.html"
#: Never in a header: line breaks (CR, LF, Unicode's) and every other control character.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


class Refused(Exception):
    """The mailing cannot be previewed, tested or sent as it is; the text says why."""


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
    """The mailing's content, with merge fields left in for the sender to fill.

    A page with a view restriction is never rendered (``Refused``): it may have
    gained one after the draft was saved, and a preview render ignores it.
    """
    if mailing.page_id:
        refusal = page_refusal(mailing.page)
        if refusal:
            raise Refused(refusal)
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


# ---- what may go in a mailing: envelope and page --------------------------------


def has_control_characters(value: str | None) -> bool:
    return bool(value) and CONTROL_CHARACTERS.search(value) is not None


def one_line(value: str) -> str:
    """``value`` safe for a header: each control character becomes a space."""
    return CONTROL_CHARACTERS.sub(" ", value or "")


def _parse_sender(value: str) -> tuple[str, str]:
    """(display name, lower-cased address) of one sender; ValueError if it is not one."""
    if has_control_characters(value):
        raise ValueError(value)
    try:
        (parsed,) = parse_address_list([value])
        validate_email(parsed.addr_spec)
    except (AnymailInvalidAddress, ValidationError, ValueError) as exc:
        raise ValueError(value) from exc
    return parsed.display_name, parsed.addr_spec.lower()


def allowed_senders() -> list[str]:
    """The From values a mailing may use: ``DEFAULT_FROM_EMAIL``, then
    ``MAILING_FROM_ADDRESSES`` (an address or "Name <address>" each)."""
    configured = list(get_setting("MAILING_FROM_ADDRESSES") or [])
    for entry in configured:
        try:
            _parse_sender(str(entry))
        except ValueError:
            raise ImproperlyConfigured(
                f'WAGTAIL_MAILLOG["MAILING_FROM_ADDRESSES"] has {entry!r}, which is not '
                'one email address ("news@example.com" or "News <news@example.com>")'
            ) from None
    senders = [str(settings.DEFAULT_FROM_EMAIL)]
    return senders + [str(e) for e in configured if str(e) not in senders]


def is_allowed_sender(value: str | None) -> bool:
    """Empty (the site's default sender), or one of :func:`allowed_senders`.

    A bare address matches an allowed sender with that address; a value with a
    display name must have that sender's display name too (no "Your Bank <news@…>").
    """
    if not value:
        return True
    try:
        name, address = _parse_sender(value)
    except ValueError:
        return False
    for sender in allowed_senders():
        try:
            allowed_name, allowed_address = _parse_sender(sender)
        except ValueError:  # a DEFAULT_FROM_EMAIL we cannot read matches only itself
            if value == sender:
                return True
            continue
        if address == allowed_address and name in ("", allowed_name):
            return True
    return False


def envelope_refusal(mailing: Any) -> str | None:
    """Why the mailing's subject, From or Reply-To cannot go out as they are, or None."""
    for value, label in (
        (mailing.subject, _("subject")),
        (mailing.from_email, _("From address")),
        (mailing.reply_to, _("Reply-To address")),
    ):
        if has_control_characters(value):
            return _(
                "The %(field)s contains a line break or another control character; "
                "edit the mailing."
            ) % {"field": label}
    if not is_allowed_sender(mailing.from_email):
        return _(
            "The sender “%(sender)s” is not one this site allows; edit the mailing and "
            "choose one of the senders offered."
        ) % {"sender": mailing.from_email}
    return None


def may_view_page(user: Any, page: Any) -> bool:
    """Whether ``user`` may see the page's content in the admin: edit or publish it
    (what Wagtail's own page preview asks)."""
    perms = page.permissions_for_user(user)
    return perms.can_edit() or perms.can_publish()


def page_refusal(page: Any, user: Any = None) -> str | None:
    """Why ``page`` cannot be a mailing's body (for ``user``, if given), or None.

    The page must have no view restriction, its own or inherited (password,
    groups, login): a mailing would hand private content to every member.
    """
    if user is not None and not may_view_page(user, page):
        return _(
            "You may not use this page: only pages you can edit or publish in the "
            "admin can be a mailing's body."
        )
    if page.get_view_restrictions().exists():
        return _(
            "This page is private (it or a page above it has a view restriction: a "
            "password, groups or login), so it cannot be a mailing's body."
        )
    return None


def refusal(mailing: Any, user: Any) -> str | None:
    """Why ``user`` cannot test or send ``mailing`` as it is now, or None."""
    if mailing.page_id:
        found = page_refusal(mailing.page, user)
        if found:
            return found
    return envelope_refusal(mailing)


def choosable_pages(pages: Any, user: Any) -> Any:
    """The pages the body's chooser offers ``user``: none under a view restriction, and
    only those the user may explore (their pages, and the way down to them)."""
    for path in PageViewRestriction.objects.values_list("page__path", flat=True):
        pages = pages.exclude(path__startswith=path)
    policy = PagePermissionPolicy()
    return pages.filter(pk__in=policy.explorable_instances(user).values("pk"))
