"""What people can do to logged mail: resend it, cancel it.

Admin views, bulk actions and commands call these; none of them touches the
ORM for these actions itself.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

from anymail.exceptions import AnymailInvalidAddress
from anymail.utils import EmailAddress
from django.contrib.contenttypes.models import ContentType
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from . import status as rules
from .conf import get_setting
from .context import PK_ATTRIBUTE, label
from .models import Address, AddressStatus, Mailing, Message, Recipient, SendAttempt
from .models.addresses import PROBLEMS
from .models.messages import Role
from .redaction import REDACTED, is_sensitive


class ActionRefused(Exception):
    """The action is not possible for this message; the text says why."""


@dataclass
class ResendResult:
    """What a resend did: the new messages, and what became of each chosen address."""

    original: Message
    messages: list[Message] = field(default_factory=list)
    sent: list[str] = field(default_factory=list)  # handed to the ESP
    queued: list[str] = field(default_factory=list)  # waiting in our outbox
    blocked: dict[str, str] = field(default_factory=dict)  # address: why it got nothing
    failed: dict[str, str] = field(default_factory=dict)  # address: the error

    @property
    def new(self) -> Message | None:
        """The new message when there is exactly one (a mailing's members get one each)."""
        return self.messages[0] if len(self.messages) == 1 else None

    @property
    def error(self) -> str:
        return next(iter(self.failed.values()), "")


def mailing_of(message: Message) -> Mailing | None:
    """The mailing ``message`` was one of the recipients' mails of, else None."""
    if not _is_mailings(message) or not str(message.object_id).isdigit():
        return None
    return Mailing.objects.filter(pk=int(message.object_id)).first()


def _is_mailings(message: Message) -> bool:
    from .mailings.sending import SOURCE

    return (
        message.source == SOURCE
        and message.content_type_id is not None
        and message.content_type_id == ContentType.objects.get_for_model(Mailing).pk
    )


def resend_refusal(message: Message) -> str:
    """Why ``message`` cannot be resent, or "" when it can.

    A mailing's mail is rendered again from the mailing, member by member, so it
    needs no stored body; other mail is sent again from its stored body.
    """
    if message.attachment_count:
        return _(
            "Attachments are not kept after a message leaves, so a message "
            "with attachments cannot be resent. Send it again from where it was made."
        )
    if _is_mailings(message):
        from .mailings.content import page_refusal

        mailing = mailing_of(message)
        if mailing is None:
            return _("The mailing this mail was part of was deleted, so it cannot be resent.")
        return (page_refusal(mailing.page) or "") if mailing.page_id else ""
    if not message.body_stored and is_sensitive(message.source):
        return _(
            "This message carries a credential (a password reset or confirmation link): "
            "its body is never stored, so it cannot be resent. Ask for a new one instead."
        )
    if not message.body_stored:
        return _("The body of this message was not stored, so it cannot be resent.")
    stored = [message.body_text, message.body_html, *map(str, (message.headers or {}).values())]
    if any(REDACTED in part for part in stored if part):
        return _(
            "One-time links were cut out of the stored copy of this message, so "
            "resending it would send broken links. Send it again from where it was made."
        )
    return ""


def held_back(message: Message, addresses: Collection[str]) -> dict[str, str]:
    """The addresses of ``message`` a resend would not reach now, and why (the status).

    A mailing goes to confirmed addresses only, as when it was sent; other mail
    to no address with a problem status (bounced, spam, unsubscribed, ...),
    unless its source is one of ``UNSUPPRESSED_SOURCES``.
    """
    wanted = set(addresses)
    if not wanted:
        return {}
    if _is_mailings(message):
        from .mailings.audiences import NOT_KNOWN, reason_label

        known = dict(Address.objects.filter(address__in=wanted).values_list("address", "status"))
        return {
            a: reason_label(known.get(a, NOT_KNOWN))
            for a in wanted
            if known.get(a) != AddressStatus.CONFIRMED
        }
    if message.source in (get_setting("UNSUPPRESSED_SOURCES") or []):
        return {}
    return {
        a: str(AddressStatus(s).label)
        for a, s in Address.objects.filter(address__in=wanted, status__in=PROBLEMS).values_list(
            "address", "status"
        )
    }


def formatted_address(recipient: Recipient) -> str:
    """``recipient`` as a To/Cc/Bcc entry: the display name quoted and escaped as RFC 5322
    says ("Smith, John" stays one person), on one line (CR/LF and controls dropped)."""
    name = " ".join((recipient.name or "").split())
    name = "".join(ch for ch in name if ch.isprintable())
    return EmailAddress(name, recipient.address).address


def _rebuild(message: Message, by_role: dict[str, list[str]]) -> EmailMultiAlternatives:
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
    """Send ``message`` again as new mail linked to it (the old one keeps its history).

    ``recipients`` limits the resend to some of its recipients (default: all).
    Other mail goes as one new message to the chosen recipients, each in the
    role (To, Cc, Bcc) it had. A mailing's mail is rendered again from the
    mailing for each chosen member: their own message, merge values and
    unsubscribe link, never one message to several members.
    Raises :class:`ActionRefused` when the message cannot be resent.
    """
    refusal = resend_refusal(message)
    if refusal:
        raise ActionRefused(refusal)
    chosen = list(recipients) if recipients is not None else list(message.recipients.all())
    if not chosen:
        raise ActionRefused(_("No recipient was chosen."))
    result = ResendResult(original=message)
    mailing = mailing_of(message)
    if mailing is not None:
        _resend_mailing(message, mailing, chosen, user, result)
        return result
    by_role: dict[str, list[str]] = {Role.TO: [], Role.CC: [], Role.BCC: []}
    addresses = []
    for r in chosen:
        try:
            by_role[r.role].append(formatted_address(r))
        except AnymailInvalidAddress as exc:
            result.failed[r.address] = str(exc)
        else:
            addresses.append(r.address)
    if not addresses:
        return result
    email = _rebuild(message, by_role)
    label(
        email,
        source=message.source,
        related=message.related_object,
        user=user,
        system=False if user is not None else message.system_generated,
        importance=message.importance,
        connector=message.connector or None,
    )
    _send(email, message, addresses, result)
    return result


def _resend_mailing(
    message: Message, mailing: Mailing, chosen: list[Recipient], user: Any, result: ResendResult
) -> None:
    """Each chosen member gets the mailing rendered for them (see ``member_message``)."""
    from .mailings import audiences, content
    from .mailings.sending import member_message

    try:
        body = content.build(mailing)
    except content.Refused as refusal:  # e.g. its page is now private
        raise ActionRefused(str(refusal)) from refusal
    addresses = list(dict.fromkeys(r.address for r in chosen))
    result.blocked.update(held_back(message, addresses))
    wanted = [a for a in addresses if a not in result.blocked]
    if not wanted:
        return
    ids = dict(Address.objects.filter(address__in=wanted).values_list("address", "pk"))
    audience = audiences.get(mailing.audience)
    names = audience.names(wanted) if audience is not None else {}
    kept = {r.address: r.name for r in chosen}
    for address in wanted:
        entry = audiences.Entry(address, names.get(address, kept.get(address, "")))
        email = member_message(mailing, entry, ids[address], body)
        label(email, user=user, system=False if user is not None else None)
        _send(email, message, [address], result)


def _send(
    email: EmailMultiAlternatives, original: Message, addresses: list[str], result: ResendResult
) -> None:
    """Send one rebuilt ``email`` and file what became of each of ``addresses``."""
    error = ""
    try:
        email.send()
    except Exception as exc:  # the ESP refused: the new row keeps the evidence
        error = f"{type(exc).__name__}: {exc}"
    new_pk = getattr(email, PK_ATTRIBUTE, None)
    if new_pk is None:  # not recorded: sent by a backend the log does not see
        for address in addresses:
            if error:
                result.failed[address] = error
            else:
                result.sent.append(address)
        return
    Message.objects.filter(pk=new_pk).update(resent_from=original)
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
    result.messages.append(new)
    rows = list(new.recipients.values_list("address", "status", "reason"))
    # Mail waiting in the outbox meets the same address check when it leaves.
    held = held_back(original, [a for a, status, _r in rows if status in _HELD_STATUSES])
    for address, status, reason in rows:
        if status == rules.Status.BLOCKED or (status == rules.Status.PENDING and address in held):
            result.blocked[address] = held.get(address) or reason
        elif status in rules.FAILURES:
            result.failed[address] = error or reason
        elif status == rules.Status.PENDING:
            result.queued.append(address)
        else:
            result.sent.append(address)


#: Statuses of a new row whose address check is looked up for the report.
_HELD_STATUSES = frozenset({rules.Status.BLOCKED, rules.Status.PENDING})


def _listing(items: list[str], limit: int = 10) -> str:
    shown = ", ".join(items[:limit])
    if len(items) > limit:
        shown += " " + _("and %(count)d more") % {"count": len(items) - limit}
    return shown


def describe(results: Iterable[ResendResult]) -> tuple[str, str]:
    """What resends did, in words for the person who asked: ``(level, text)``, the level
    ``"success"`` when everyone chosen got the mail, ``"warning"`` when some got nothing
    because of their address's status, ``"error"`` when sending failed for some."""
    sent, queued, blocked, failed = 0, 0, {}, {}
    for result in results:
        sent += len(result.sent)
        queued += len(result.queued)
        blocked.update(result.blocked)
        failed.update(result.failed)
    parts = []
    if sent:
        parts.append(
            ngettext(
                "Sent again to %(count)d recipient.", "Sent again to %(count)d recipients.", sent
            )
            % {"count": sent}
        )
    if queued:
        parts.append(
            ngettext(
                "Queued in the outbox to be sent again to %(count)d recipient.",
                "Queued in the outbox to be sent again to %(count)d recipients.",
                queued,
            )
            % {"count": queued}
        )
    if not sent and not queued:
        parts.append(_("Nothing was sent."))
    if blocked:
        parts.append(
            ngettext(
                "Not sent to %(count)d recipient because of the address's status: %(addresses)s.",
                "Not sent to %(count)d recipients because of their addresses' status: "
                "%(addresses)s.",
                len(blocked),
            )
            % {
                "count": len(blocked),
                "addresses": _listing([f"{a} ({why})" for a, why in blocked.items()]),
            }
        )
    if failed:
        parts.append(
            ngettext(
                "Sending failed for %(count)d recipient: %(errors)s",
                "Sending failed for %(count)d recipients: %(errors)s",
                len(failed),
            )
            % {"count": len(failed), "errors": _listing(list(dict.fromkeys(failed.values())), 3)}
        )
    level = "error" if failed else "warning" if blocked or not (sent or queued) else "success"
    return level, " ".join(parts)


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
