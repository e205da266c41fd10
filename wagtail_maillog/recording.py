"""anymail's ``pre_send`` and ``post_send`` receivers: what left, and how.

``pre_send`` records the message and its recipients (status "sending") before
the ESP is called, and marks the ``EmailMessage`` with the id of its row so
``post_send`` (and a later retry of the same object) finds it again.
"""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from email.errors import HeaderParseError
from email.header import decode_header, make_header
from email.mime.base import MIMEBase
from typing import Any

from anymail.exceptions import AnymailInvalidAddress
from anymail.utils import parse_address_list
from django.contrib.contenttypes.models import ContentType
from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from . import status as rules
from .bulk import insert_rows, update_fields
from .conf import get_setting
from .context import (
    ATTRIBUTE,
    PASSWORD_RESET,
    MailLabel,
    PasswordReset,
    label_for,
    password_reset_account,
    source_from_stack,
)
from .events import StatusChange, announce, attach_orphans, lock_esp_ids
from .models import Message, Recipient, SendAttempt
from .models.messages import Importance, Role
from .redaction import is_sensitive, redact, redact_headers

logger = logging.getLogger(__name__)

#: The attribute of an ``EmailMessage`` that holds the pk of its Message row.
PK_ATTRIBUTE = "_maillog_pk"
#: Set by the outbox worker: the SendAttempt row of the hand-over in progress.
ATTEMPT_ATTRIBUTE = "_maillog_attempt_pk"


#: A bare address ("a@b.example"): no display name, nothing for the full parser to do.
_BARE = re.compile(r"[^\s<>\",;:()\[\]\\@]+@[^\s<>\",;:()\[\]\\@]+")


def _addresses(values: Any) -> list[tuple[str, str]]:
    """(address, display name) pairs; addresses lower-cased as ESPs report them."""
    if not values:
        return []
    if all(isinstance(v, str) and _BARE.fullmatch(v) for v in values):
        # A mailing's 500 bare addresses: the email header parser costs ~0.1 ms each.
        return [(v.lower()[:254], "") for v in values]
    try:
        parsed = parse_address_list(values)
    except AnymailInvalidAddress:
        return [(str(v).strip().lower()[:254], "") for v in values]
    return [(a.addr_spec.lower()[:254], _readable(a.display_name)[:255]) for a in parsed]


def _readable(name: str | None) -> str:
    """A display name as people write it: RFC 2047 encoded words (``=?utf-8?q?S=C3=B8ren?=``,
    what ``email.utils.formataddr`` makes of "Søren") decoded."""
    if not name or "=?" not in name:
        return name or ""
    try:
        return str(make_header(decode_header(name)))
    except (HeaderParseError, LookupError, UnicodeDecodeError):
        return name


def _attachment_names(message: Any) -> list[str]:
    names = []
    for attachment in getattr(message, "attachments", []) or []:
        if isinstance(attachment, MIMEBase):
            names.append(attachment.get_filename() or attachment.get("Content-ID", "") or "")
        else:
            names.append(attachment[0] or "")
    return names


def _bodies(message: Any) -> tuple[str, str]:
    """(text, html) of an ``EmailMessage`` or ``EmailMultiAlternatives``."""
    text, html = "", ""
    body = message.body or ""
    if getattr(message, "content_subtype", "plain") == "html":
        html = body
    else:
        text = body
    for content, mimetype in getattr(message, "alternatives", []) or []:
        if mimetype == "text/html" and not html:
            html = content if isinstance(content, str) else content.decode("utf-8", "replace")
    return text, html


def _importance(given: str | None, headers: dict[str, str]) -> str:
    if given in Importance.values:
        return given
    lowered = {k.lower(): str(v).strip().lower() for k, v in headers.items()}
    if lowered.get("importance") in ("high", "low"):
        return lowered["importance"]
    priority = lowered.get("x-priority", "")[:1]
    if priority in ("1", "2"):
        return Importance.HIGH
    if priority in ("4", "5"):
        return Importance.LOW
    return Importance.NORMAL


def _related(obj: Any) -> dict[str, Any]:
    if obj is None or getattr(obj, "pk", None) is None:
        return {}
    return {
        "content_type": ContentType.objects.get_for_model(obj),
        "object_id": str(obj.pk)[:64],
        "related_label": str(obj)[:255],
    }


def _about_account(message: Any, label: MailLabel, reset: PasswordReset) -> MailLabel:
    """A password reset belongs to the account it is about: not to the user who
    asked for it (anyone may, logged in or not), nor to their team."""
    own = getattr(message, ATTRIBUTE, None) or MailLabel()
    return replace(
        label,
        source=own.source or PASSWORD_RESET,
        user=None,
        team=None,
        system=True,
        sensitive=True,
        related=reset.account if own.related is None else own.related,
    )


def _team(label: MailLabel) -> Any:
    if label.team is not None:
        return label.team
    user = label.user
    if user is None or not getattr(user, "pk", None):
        return None
    return user.groups.order_by("name").first()


def record_message(
    message: Any, esp_name: str = "", connector: str = "", status: str = rules.Status.SENDING
) -> Message:
    """Create the log rows of an outgoing ``EmailMessage``, its recipients in ``status``
    ("sending" as it leaves; the outbox records "pending" straight away: one write
    per recipient row, not an INSERT and then an UPDATE of every index)."""
    label = label_for(message)
    reset = password_reset_account()
    if reset is not None:
        label = _about_account(message, label, reset)
    stack_source = None if label.source else source_from_stack()
    source = label.source or stack_source or get_setting("DEFAULT_SOURCE")
    if label.system is not None:
        system = label.system
    else:
        system = stack_source is not None or label.user is None
    headers = redact_headers(
        {str(k): str(v) for k, v in (getattr(message, "extra_headers", {}) or {}).items()}
    )
    store_body = label.store_body if label.store_body is not None else get_setting("STORE_BODY")
    store_body = bool(store_body) and not is_sensitive(source, label.sensitive)
    text, html = _bodies(message) if store_body else ("", "")
    text, html = redact(text), redact(html)
    attachments = _attachment_names(message)
    now = timezone.now()
    user = label.user if getattr(label.user, "pk", None) else None

    row = Message.objects.create(
        created_at=now,
        subject=str(message.subject or ""),
        from_email=str(message.from_email or "")[:320],
        reply_to=[str(a) for a in (message.reply_to or [])],
        headers=headers,
        tags=list(getattr(message, "tags", None) or []),
        metadata=dict(getattr(message, "metadata", None) or {}),
        importance=_importance(label.importance, headers),
        source=source[:64],
        esp_name=esp_name[:64],
        connector=(connector or label.connector or "")[:64],  # resolved name first
        created_by=user,
        team=_team(label),
        system_generated=system,
        attachment_count=len(attachments),
        attachment_names=attachments,
        body_stored=bool(store_body),
        body_text=text,
        body_html=html,
        **_related(label.related),
    )
    # Plain value rows, not model instances: a mailing's chunk has hundreds.
    insert_rows(
        Recipient,
        ["message", "created_at", "address", "name", "role", "status", "status_at"],
        (
            (row.pk, now, address, name, role, status, now)
            for role, values in (
                (Role.TO, message.to),
                (Role.CC, message.cc),
                (Role.BCC, message.bcc),
            )
            for address, name in _addresses(values)
        ),
    )
    setattr(message, PK_ATTRIBUTE, row.pk)
    return row


def on_pre_send(sender: Any, message: Any, esp_name: str, **kwargs: Any) -> None:
    """Record the message before it leaves, then hold back suppressed addresses.

    An ``EmailMessage`` whose earlier send never reached the ESP (an exception,
    or a retry from the outbox) keeps its row; one that was sent before gets a
    new row, so the first send keeps its ESP ids and events.
    """
    from .addresses.suppression import apply as suppress

    pk = getattr(message, PK_ATTRIBUTE, None)
    reuse = (
        pk is not None
        and Recipient.objects.filter(message_id=pk).exists()
        and not Recipient.objects.filter(message_id=pk).exclude(esp_message_id="").exists()
    )
    if reuse:
        Message.objects.filter(pk=pk).update(esp_name=esp_name[:64])
        Recipient.objects.filter(message_id=pk).exclude(
            status__in=[rules.Status.CANCELLED, rules.Status.BLOCKED]
        ).update(status=rules.Status.SENDING, status_at=timezone.now())
    else:
        pk = record_message(message, esp_name=esp_name).pk
    suppress(message, pk)


def _send_reason(result: Any, new_status: str) -> str:
    if new_status in rules.FAILURES:
        return _("The ESP refused this recipient when the message was sent (%(status)s).") % {
            "status": result.status
        }
    return ""


def on_post_send(sender: Any, message: Any, status: Any, esp_name: str, **kwargs: Any) -> None:
    """Store the ESP's per-recipient status and message id, then adopt orphans."""
    pk = getattr(message, PK_ATTRIBUTE, None)
    if pk is None:
        logger.warning("post_send for a message wagtail-maillog did not record: %r", message)
        return
    now = timezone.now()
    results = {addr.lower(): rs for addr, rs in (status.recipients or {}).items()}
    changes: list[StatusChange] = []
    with transaction.atomic():
        lock_esp_ids(str(rs.message_id)[:255] for rs in results.values() if rs.message_id)
        recipients = list(
            Recipient.objects.select_for_update(
                no_key=connection.features.has_select_for_no_key_update
            )
            .filter(message_id=pk)
            .order_by("pk")
        )
        for r in recipients:
            result = results.get(r.address)
            if result is None:
                continue
            r.esp_message_id = "" if result.message_id is None else str(result.message_id)[:255]
            new = rules.status_for_send_result(result.status)
            before = r.status
            after = rules.transition(rules.Current(r.status, r.status_at), new, now)
            r.status, r.status_at = after.status, after.at
            r.reason = _send_reason(result, r.status) or r.reason
            if r.status != before:
                changes.append(StatusChange(r.pk, r.address, before, r.status, None, ""))
        update_fields(recipients, ["esp_message_id", "status", "status_at", "reason"])
        response = {
            addr: {
                "message_id": None if rs.message_id is None else str(rs.message_id),
                "status": rs.status,
            }
            for addr, rs in results.items()
        }
        attempt_pk = getattr(message, ATTEMPT_ATTRIBUTE, None)
        if attempt_pk is not None:  # the outbox worker opened this attempt
            SendAttempt.objects.filter(pk=attempt_pk).update(
                outcome=SendAttempt.Outcome.SENT, response=response
            )
        else:
            SendAttempt.objects.create(
                message_id=pk,
                at=now,
                outcome=SendAttempt.Outcome.SENT,
                connector=esp_name[:64],
                response=response,
            )
        announce(changes)
        attach_orphans(recipients)
