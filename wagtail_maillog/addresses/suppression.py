"""Suppression at send time: no mail to an address with a problem status.

Runs inside anymail's ``pre_send`` (after the message is recorded): problem
addresses are taken off the message and recorded as ``blocked`` with the
reason; if nobody is left, the send is cancelled (``AnymailCancelSend``) and
no ESP call is made.

Mail that must always go (a password reset to a bounced address the member
just fixed) opts out per message with ``label(msg, suppress=False)``, or per
source with ``WAGTAIL_MAILLOG["UNSUPPRESSED_SOURCES"]``.
"""

from __future__ import annotations

from typing import Any

from anymail.exceptions import AnymailCancelSend
from anymail.utils import parse_address_list
from django.utils import timezone
from django.utils.translation import gettext as _

from .. import status as rules
from ..conf import get_setting
from ..context import ATTEMPT_ATTRIBUTE, label_for
from ..models import Address, AddressStatus, Message, Recipient, SendAttempt
from ..models.addresses import PROBLEMS
from . import normalize


def exempt(message: Any, row: Message) -> bool:
    """``message`` goes even to problem addresses (its label says so, or its source)."""
    own = label_for(message).suppress
    if own is not None:
        return not own
    return row.source in (get_setting("UNSUPPRESSED_SOURCES") or [])


def keep_deliverable(values: Any, blocked: set[str]) -> list[Any]:
    """``values`` (a To, Cc or Bcc list) without the ``blocked`` addresses."""
    kept = []
    for value in values or []:
        try:
            (parsed,) = parse_address_list([value])
            key = normalize(parsed.addr_spec)
        except Exception:  # leave what we cannot parse to the ESP's own checks
            key = normalize(str(value))
        if key not in blocked:
            kept.append(value)
    return kept


def apply(message: Any, pk: int) -> None:
    """Drop problem addresses from ``message``; cancel the send if none remain."""
    row = Message.objects.only("pk", "source", "connector", "esp_name").get(pk=pk)
    if exempt(message, row):
        return
    recipients = list(Recipient.objects.filter(message_id=pk).only("pk", "address", "status"))
    problems = dict(
        Address.objects.filter(
            address__in={r.address for r in recipients}, status__in=PROBLEMS
        ).values_list("address", "status")
    )
    if not problems:
        return
    now = timezone.now()
    by_status: dict[str, list[str]] = {}
    for address, status in problems.items():
        by_status.setdefault(status, []).append(address)
    for status, addresses in by_status.items():  # one UPDATE per problem kind, not per address
        Recipient.objects.filter(message_id=pk, address__in=addresses).update(
            status=rules.Status.BLOCKED,
            status_at=now,
            reason=_("Not sent: the address has the status “%(status)s”.")
            % {"status": AddressStatus(status).label},
        )
    blocked = set(problems)
    message.to = keep_deliverable(message.to, blocked)
    message.cc = keep_deliverable(message.cc, blocked)
    message.bcc = keep_deliverable(message.bcc, blocked)
    if not (message.to or message.cc or message.bcc):
        error = _("Every recipient has a problem status; nothing was sent.")
        attempt_pk = getattr(message, ATTEMPT_ATTRIBUTE, None)
        if attempt_pk is not None:  # the outbox worker's attempt in progress
            SendAttempt.objects.filter(pk=attempt_pk).update(
                outcome=SendAttempt.Outcome.BLOCKED, error=error
            )
        else:
            SendAttempt.objects.create(
                message_id=pk,
                outcome=SendAttempt.Outcome.BLOCKED,
                connector=row.connector or row.esp_name,
                error=error,
            )
        raise AnymailCancelSend("every recipient is suppressed")
