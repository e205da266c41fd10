"""Unsubscribe links: signed, expiring, naming no address in the clear.

A link carries ``{address id, mailing id}`` signed with the site's SECRET_KEY
and a timestamp. It cannot be guessed or altered (signature), shows no
address in the URL (an id, not the address), and stops working after
``UNSUBSCRIBE_MAX_AGE_DAYS``. Using it twice changes nothing the second time:
the address is already unsubscribed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.urls import reverse
from django.utils.translation import gettext as _

from .. import tokens
from ..conf import get_setting
from ..models import Address, AddressStatus, Mailing
from .content import site_url

SALT = "wagtail_maillog.unsubscribe"


class Outcome:
    ASK = "ask"  # valid: the page asks to confirm
    DONE = "done"  # just unsubscribed
    ALREADY = "already"
    EXPIRED = "expired"
    INVALID = "invalid"


@dataclass
class Checked:
    outcome: str
    address: Address | None = None
    mailing: Mailing | None = None


def make_token(address_id: int, mailing_id: int) -> str:
    return tokens.make({"a": address_id, "m": mailing_id}, SALT)


def unsubscribe_url(token: str) -> str:
    return f"{site_url()}{reverse('wagtail_maillog_public:unsubscribe', args=[token])}"


def one_click_url(token: str) -> str:
    """RFC 8058 one-click target (``List-Unsubscribe-Post``), no form, no CSRF token."""
    return f"{site_url()}{reverse('wagtail_maillog_public:unsubscribe_one_click', args=[token])}"


def signed(token: str) -> bool:
    """The token is ours and has not expired (its signature only: no query)."""
    return not isinstance(tokens.read(token, SALT, get_setting("UNSUBSCRIBE_MAX_AGE_DAYS")), str)


def check(token: str) -> Checked:
    data = tokens.read(token, SALT, get_setting("UNSUBSCRIBE_MAX_AGE_DAYS"))
    if isinstance(data, str):
        return Checked(data)  # tokens.EXPIRED / INVALID are the outcomes of the same name
    address = Address.objects.filter(pk=data.get("a")).first()
    if address is None:
        return Checked(Outcome.INVALID)
    mailing = Mailing.objects.filter(pk=data.get("m")).first()
    if address.status == AddressStatus.UNSUBSCRIBED:
        return Checked(Outcome.ALREADY, address, mailing)
    return Checked(Outcome.ASK, address, mailing)


def unsubscribe(token: str, user: Any = None) -> Checked:
    """Use a link: the address becomes "unsubscribed" (no more mailings to it)."""
    from ..addresses.health import set_status

    checked = check(token)
    if checked.outcome != Outcome.ASK or checked.address is None:
        return checked
    cause = (
        _("Unsubscribed through the link in the mailing “%(subject)s”")
        % {"subject": checked.mailing.subject}
        if checked.mailing
        else _("Unsubscribed through a mailing's link")
    )
    set_status([(checked.address.address, AddressStatus.UNSUBSCRIBED, cause)], user=user)
    checked.outcome = Outcome.DONE
    return checked
