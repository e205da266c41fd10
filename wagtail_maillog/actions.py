"""What people can do to logged mail: resend it, cancel it.

Admin views, bulk actions and commands call these; none of them touches the
ORM for these actions itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from . import status as rules
from .context import label
from .models import Message, Recipient, SendAttempt
from .models.messages import Role
from .recording import PK_ATTRIBUTE


class ActionRefused(Exception):
    """The action is not possible for this message; the text says why."""


@dataclass
class ResendResult:
    original: Message
    new: Message | None
    error: str = ""


def resend_refusal(message: Message) -> str:
    """Why ``message`` cannot be resent, or "" when it can."""
    if message.attachment_count:
        return _(
            "Attachments are not kept after a message leaves, so a message "
            "with attachments cannot be resent. Send it again from where it was made."
        )
    if not message.body_stored:
        return _("The body of this message was not stored, so it cannot be resent.")
    return ""


def _rebuild(message: Message, recipients: list[Recipient]) -> EmailMultiAlternatives:
    by_role: dict[str, list[str]] = {Role.TO: [], Role.CC: [], Role.BCC: []}
    for r in recipients:
        by_role[r.role].append(f"{r.name} <{r.address}>" if r.name else r.address)
    email = EmailMultiAlternatives(
        subject=message.subject,
        body=message.body_text,
        from_email=message.from_email or None,
        to=by_role[Role.TO],
        cc=by_role[Role.CC],
        bcc=by_role[Role.BCC],
        reply_to=message.reply_to or None,
        headers=message.headers or None,
    )
    if message.body_html:
        if message.body_text:
            email.attach_alternative(message.body_html, "text/html")
        else:
            email.body = message.body_html
            email.content_subtype = "html"
    email.tags = list(message.tags or [])
    email.metadata = dict(message.metadata or {})
    return email


def resend(
    message: Message, user: Any = None, recipients: Iterable[Recipient] | None = None
) -> ResendResult:
    """Send ``message`` again as a new message linked to it (the old one keeps its history).

    ``recipients`` limits the resend to some of its recipients (default: all).
    Raises :class:`ActionRefused` when the message cannot be resent.
    """
    refusal = resend_refusal(message)
    if refusal:
        raise ActionRefused(refusal)
    chosen = list(recipients) if recipients is not None else list(message.recipients.all())
    if not chosen:
        raise ActionRefused(_("No recipient was chosen."))
    email = _rebuild(message, chosen)
    label(
        email,
        source=message.source,
        related=message.related_object,
        user=user,
        system=False if user is not None else message.system_generated,
        importance=message.importance,
        connector=message.connector or None,
    )
    error = ""
    try:
        email.send()
    except Exception as exc:  # the ESP refused: the new row keeps the evidence
        error = f"{type(exc).__name__}: {exc}"
    new_pk = getattr(email, PK_ATTRIBUTE, None)
    new = None
    if new_pk is not None:
        Message.objects.filter(pk=new_pk).update(resent_from=message)
        new = Message.objects.get(pk=new_pk)
        if error and not new.attempts.exists():  # the ESP never answered
            SendAttempt.objects.create(
                message=new,
                outcome=SendAttempt.Outcome.FAILED,
                connector=new.esp_name,
                error=error,
            )
        if error:
            Recipient.objects.filter(
                message=new, status__in=[rules.Status.SENDING, rules.Status.PENDING]
            ).update(status=rules.Status.FAILED, status_at=timezone.now(), reason=error)
    return ResendResult(original=message, new=new, error=error)


def _outbox_item(message: Message) -> Any:
    from .models import OutboxItem

    return OutboxItem.objects.filter(message=message).first()


def cancel_refusal(message: Message) -> str:
    from .models.outbox import CANCELLABLE_STATES

    item = _outbox_item(message)
    if item is not None:
        if item.state not in CANCELLABLE_STATES:
            return _("The message is being handed to the ESP right now; it cannot be cancelled.")
        return ""
    if not message.recipients.filter(status__in=rules.CANCELLABLE).exists():
        return _("Only mail that is still pending in our outbox can be cancelled.")
    return ""


def cancel(message: Message, user: Any = None) -> int:
    """Cancel the recipients of ``message`` that are still pending; returns how many."""
    item = _outbox_item(message)
    if item is not None:
        from .outbox.worker import cancel as cancel_items

        refusal = cancel_refusal(message)
        if refusal or not cancel_items([item], user=user):
            raise ActionRefused(refusal or _("Nothing to cancel."))
        return message.recipients.filter(status=rules.Status.CANCELLED).count()
    with transaction.atomic():
        now = timezone.now()
        count = (
            Recipient.objects.select_for_update()
            .filter(message=message, status__in=rules.CANCELLABLE)
            .update(
                status=rules.Status.CANCELLED,
                status_at=now,
                reason=_("Cancelled by %(user)s") % {"user": user} if user else _("Cancelled"),
            )
        )
        if not count:
            raise ActionRefused(cancel_refusal(message) or _("Nothing to cancel."))
        SendAttempt.objects.create(
            message=message,
            at=now,
            outcome=SendAttempt.Outcome.CANCELLED,
            connector=message.connector or message.esp_name,
            error=_("Cancelled by %(user)s") % {"user": user} if user else "",
        )
    return count
