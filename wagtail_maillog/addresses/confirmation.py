"""Double opt-in: signed, expiring, single-use confirmation links.

A link carries ``{address id, nonce}`` signed with the site's SECRET_KEY and a
timestamp (Django's ``TimestampSigner``). It works once: confirming, or a new
request, replaces the address's nonce, so an old or used link no longer
matches. It cannot be guessed (signature), replayed (nonce) or used after
``CONFIRMATION_MAX_AGE_DAYS`` (timestamp). A link for an address that is no
longer the member's does nothing for the new one: it names the old row.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from .. import tokens
from ..conf import get_setting
from ..context import label
from ..models import Address, AddressStatus
from . import members
from .health import ensure, set_status

SALT = "wagtail_maillog.confirmation"


class Outcome:
    CONFIRMED = "confirmed"
    ALREADY = "already"  # the link was used before: the address is confirmed
    USED = "used"  # replaced by a newer link, or the address changed since
    EXPIRED = "expired"
    INVALID = "invalid"


@dataclass
class Checked:
    outcome: str
    address: Address | None = None


def make_token(address: Address) -> str:
    return tokens.make({"a": address.pk, "n": address.nonce}, SALT)


def confirm_url(token: str) -> str:
    from django.conf import settings

    base = get_setting("PUBLIC_BASE_URL") or getattr(settings, "WAGTAILADMIN_BASE_URL", "")
    return f"{base.rstrip('/')}{reverse('wagtail_maillog_public:confirm', args=[token])}"


def check(token: str) -> Checked:
    """What a token is worth, without changing anything (the GET of the page)."""
    data = tokens.read(token, SALT, get_setting("CONFIRMATION_MAX_AGE_DAYS"))
    if isinstance(data, str):
        return Checked(data)  # tokens.EXPIRED / INVALID are the outcomes of the same name
    address = Address.objects.filter(pk=data.get("a")).first()
    if address is None:
        return Checked(Outcome.INVALID)
    if address.has_problem:
        return Checked(Outcome.USED, address)
    if not address.nonce or not secrets.compare_digest(address.nonce, str(data.get("n", ""))):
        if address.status == AddressStatus.CONFIRMED:
            return Checked(Outcome.ALREADY, address)
        return Checked(Outcome.USED, address)
    return Checked(Outcome.CONFIRMED, address)


def confirm(token: str) -> Checked:
    """Use a token (the POST of the page): the address becomes confirmed, once."""
    checked = check(token)
    if checked.outcome != Outcome.CONFIRMED or checked.address is None:
        return checked
    # Clearing the nonce with a conditional UPDATE makes a double submit count once.
    used = Address.objects.filter(pk=checked.address.pk, nonce=checked.address.nonce).update(
        nonce=""
    )
    if not used:
        return Checked(Outcome.ALREADY, checked.address)
    set_status(
        [(checked.address.address, AddressStatus.CONFIRMED, _("Confirmed through the link"))]
    )
    checked.address.refresh_from_db()
    return checked


def send_requests(addresses: Iterable[str], user: Any = None) -> int:
    """Email a confirmation link to each address (through the normal sending path)."""
    rows = ensure(addresses)
    sent = 0
    for row in rows.values():
        if row.has_problem or row.status == AddressStatus.CONFIRMED:
            continue
        row.nonce = secrets.token_urlsafe(16)[:32]
        row.requested_at = timezone.now()
        row.save(update_fields=["nonce", "requested_at"])
        set_status([(row.address, AddressStatus.REQUESTED, _("Confirmation requested"))], user=user)
        _send(row, user)
        sent += 1
    return sent


def resend_unanswered(days: int, user: Any = None) -> int:
    """Ask again those who have not reacted to a request for ``days`` days."""
    limit = timezone.now() - timedelta(days=days)
    stale = Address.objects.filter(status=AddressStatus.REQUESTED, requested_at__lt=limit)
    return send_requests(stale.values_list("address", flat=True), user=user)


def _send(row: Address, user: Any) -> None:
    url = confirm_url(make_token(row))
    member = members.member_for(row.address)
    context = {
        "address": row.address,
        "confirm_url": url,
        "member": member,
        "days": get_setting("CONFIRMATION_MAX_AGE_DAYS"),
    }
    text = render_to_string(get_setting("CONFIRMATION_TEMPLATE"), context)
    message = EmailMultiAlternatives(
        subject=str(get_setting("CONFIRMATION_SUBJECT")), body=text, to=[row.address]
    )
    html_template = get_setting("CONFIRMATION_HTML_TEMPLATE")
    if html_template:
        message.attach_alternative(render_to_string(html_template, context), "text/html")
    label(message, source="confirmation", related=member, user=user, system=user is None)
    message.send()
