"""anymail's ``pre_send`` and ``post_send`` receivers: what left, and how.

``pre_send`` records the message and its recipients (status "sending") before
the ESP is called, and marks the ``EmailMessage`` with the id of its row so
``post_send`` (and a later retry of the same object) finds it again.

The outbox worker does both for a whole batch at once (it recorded the mail
when it was queued, and stores the answers with :func:`store_answers`): for
its hand-overs these receivers do nothing.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from email.errors import HeaderParseError
from email.header import decode_header, make_header
from email.mime.base import MIMEBase
from typing import Any

from anymail.exceptions import AnymailInvalidAddress
from anymail.utils import parse_address_list
from django.contrib.contenttypes.models import ContentType
from django.db import connection, connections, router, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from . import plans, storable
from . import status as rules
from .addresses import normalize
from .addresses.suppression import apply as suppress
from .bulk import (
    Linked,
    array_cursor,
    column_type,
    filter_in,
    insert_linked,
    prepared_columns,
    prepared_row,
    update_fields,
)
from .conf import get_setting
from .context import (
    ATTEMPT_ATTRIBUTE,
    ATTRIBUTE,
    PASSWORD_RESET,
    PK_ATTRIBUTE,
    MailLabel,
    PasswordReset,
    label_for,
    password_reset_account,
    source_from_stack,
)
from .events import StatusChange, announce, attach_orphans, lock_esp_ids
from .merging import MERGE_FIELD_ATTRIBUTE, values_to_keep
from .models import Message, OutboxItem, Recipient, SendAttempt
from .models.messages import Importance, Role
from .outbox.connectors import SwitchedState
from .redaction import is_sensitive, redact, redact_headers

logger = logging.getLogger(__name__)


#: A bare address ("a@b.example"): no display name, nothing for the full parser to do.
_BARE = re.compile(r"[^\s<>\",;:()\[\]\\@]+@[^\s<>\",;:()\[\]\\@]+")


def _addresses(values: Any) -> list[tuple[str, str]]:
    """(address, display name) pairs; addresses in the form they are compared in
    (:func:`.addresses.normalize`)."""
    if not values:
        return []
    if all(isinstance(v, str) and _BARE.fullmatch(v) for v in values):
        # A mailing's 500 bare addresses: the email header parser costs ~0.1 ms each.
        return [(storable.text(normalize(v))[:254], "") for v in values]
    try:
        parsed = parse_address_list(values)
    except AnymailInvalidAddress:
        return [(storable.text(normalize(str(v)))[:254], "") for v in values]
    return [
        (
            storable.text(normalize(a.addr_spec))[:254],
            storable.text(_readable(a.display_name))[:255],
        )
        for a in parsed
    ]


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
        "content_type_id": ContentType.objects.get_for_model(obj).pk,
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
    message: Any,
    esp_name: str = "",
    connector: str = "",
    status: str = rules.Status.SENDING,
    linked: Sequence[Linked] = (),
) -> int:
    """Create the log rows of an outgoing ``EmailMessage``, its recipients in ``status``
    ("sending" as it leaves; the outbox records "pending" straight away: one write
    per recipient row, not an INSERT and then an UPDATE of every index), and the
    ``linked`` rows that point at the message (the outbox's). Returns the message's pk.

    One statement on PostgreSQL (:func:`..bulk.insert_linked`), one per table elsewhere.
    """
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
        {
            storable.text(str(k)): storable.text(str(v))
            for k, v in (getattr(message, "extra_headers", {}) or {}).items()
        }
    )
    store_body = label.store_body if label.store_body is not None else get_setting("STORE_BODY")
    store_body = bool(store_body) and not is_sensitive(source, label.sensitive)
    text, html = _bodies(message) if store_body else ("", "")
    text, html = storable.text(redact(text)), storable.text(redact(html))
    attachments = [storable.text(name) for name in _attachment_names(message)]
    merge_data = getattr(message, "merge_data", None)
    if not isinstance(merge_data, dict) or is_sensitive(source, label.sensitive):
        merge_data = {}
    merge_data = {normalize(str(k)): v for k, v in merge_data.items()}
    now = timezone.now()
    user = label.user if getattr(label.user, "pk", None) else None

    team = _team(label)
    # Plain value rows, not model instances: a mailing's chunk has hundreds.
    recipients = [
        {
            "created_at": now,
            "address": address,
            "name": name,
            "role": role,
            "status": status,
            "status_at": now,
        }
        for role, values in ((Role.TO, message.to), (Role.CC, message.cc), (Role.BCC, message.bcc))
        for address, name in _addresses(values)
    ]
    if merge_data:  # a batch: what each recipient got (merging.py)
        for row in recipients:
            row["merge_values"] = values_to_keep(merge_data.get(row["address"]))
    pk = _insert(
        dict(
            created_at=now,
            subject=storable.text(str(message.subject or "")),
            from_email=storable.text(str(message.from_email or ""))[:320],
            reply_to=[storable.text(str(a)) for a in (message.reply_to or [])],
            headers=headers,
            tags=storable.json_value(list(getattr(message, "tags", None) or [])),
            metadata=storable.json_value(dict(getattr(message, "metadata", None) or {})),
            importance=_importance(label.importance, headers),
            source=source[:64],
            esp_name=esp_name[:64],
            connector=(connector or label.connector or "")[:64],  # resolved name first
            created_by_id=user.pk if user is not None else None,
            team_id=team.pk if team is not None else None,
            system_generated=system,
            attachment_count=len(attachments),
            attachment_names=attachments,
            body_stored=bool(store_body),
            body_text=text,
            body_html=html,
            merge_field=(getattr(message, MERGE_FIELD_ATTRIBUTE, None) or None)
            if merge_data
            else None,
            **_related(label.related),
        ),
        recipients,
        linked,
    )
    setattr(message, PK_ATTRIBUTE, pk)
    return pk


#: The PostgreSQL function of migration 0017: a message, its recipients and its
#: outbox row in one call, whose plans the database session keeps.
RECORD_ONE = "wagtail_maillog_record_one"


def _insert(
    values: dict[str, Any], recipients: list[dict[str, Any]], linked: Sequence[Linked]
) -> int:
    """Write a message's rows: its own, its recipients' and the ``linked`` ones; its pk.

    On PostgreSQL, by :data:`RECORD_ONE` once the database session keeps its plans
    (:func:`..plans.repeats`), with no more than one outbox row linked; else
    :func:`..bulk.insert_linked` (one statement on PostgreSQL).
    """
    connection = connections[router.db_for_write(Message)]
    outbox = linked[0].rows[0] if len(linked) == 1 and len(linked[0].rows) == 1 else None
    if (
        connection.vendor == "postgresql"
        and (not linked or (outbox is not None and linked[0].model is OutboxItem))
        and plans.repeats(connection, RECORD_ONE)
    ):
        return _record_one(connection, values, recipients, outbox)
    return insert_linked(Message, values, Linked(Recipient, "message", recipients), *linked)


def _record_one(
    connection: Any,
    values: dict[str, Any],
    recipients: list[dict[str, Any]],
    outbox: dict[str, Any] | None,
) -> int:
    """Call :data:`RECORD_ONE`: the message's columns, its recipients' as one array
    each, its outbox row's (none: NULL), and the state its row takes while the admin's
    switch of its connector is off."""
    switch_off = None
    if outbox is not None and isinstance(outbox.get("state"), SwitchedState):
        switch_off = outbox["state"].off  # the function reads the switch
        outbox = {**outbox, "state": outbox["state"].on}
    shape, params = prepared_row(Message, values, connection)
    with array_cursor(connection) as (cursor, placeholder):
        if len(recipients) == 1:  # the commonest: its values, each in an ARRAY[]
            one, row = prepared_row(Recipient, {"message": None, **recipients[0]}, connection)
            each, fields = one, one.fields[1:]  # (its key first: NULL)
            params += row[1:]
            placeholder = "ARRAY[%s]"
        else:
            names = list(recipients[0]) if recipients else []
            rows = [list(row.values()) for row in recipients]
            columns, arrays = prepared_columns(Recipient, names, rows, connection, ("message",))
            each = fields = tuple(columns)
            params += arrays
            placeholder = f"({placeholder})"
        own = None
        if outbox is not None:
            own, row = prepared_row(OutboxItem, {"message": None, **outbox}, connection)
            params += [*row[1:], switch_off]
        # Built once per connection and shapes of the rows (compared by identity).
        calls = connection.__dict__.setdefault("_maillog_record_one", {})
        key = (shape, each, own, placeholder)
        sql = calls.get(key)
        if sql is None:
            outbox_fields = own.fields[1:] if own is not None else None
            sql = calls[key] = _record_one_sql(
                connection, shape.fields, fields, outbox_fields, placeholder
            )
        cursor.execute(sql, params)
        return cursor.fetchone()[0]


def _record_one_sql(
    connection: Any,
    message: Sequence[Any],
    recipient: Sequence[Any],
    outbox: Sequence[Any] | None,
    array: str,
) -> str:
    """The call of :data:`RECORD_ONE` for these fields (the outbox row's: None, none),
    each argument named after its column (the order of the function's parameters does
    not matter)."""

    def typed(prefix: str, fields: Sequence[Any], placeholder: str, suffix: str = "") -> list[str]:
        return [
            f"{prefix}{f.column} => {placeholder}::{column_type(f, connection)}{suffix}"
            for f in fields
        ]

    arguments = [*typed("m_", message, "%s"), *typed("r_", recipient, array, "[]")]
    if outbox is not None:
        state = column_type(OutboxItem._meta.get_field("state"), connection)
        arguments += [*typed("o_", outbox, "%s"), f"o_switch_off => %s::{state}"]
    return f"SELECT {RECORD_ONE}({', '.join(arguments)})"


def on_pre_send(sender: Any, message: Any, esp_name: str, **kwargs: Any) -> None:
    """Record the message before it leaves, then hold back suppressed addresses.

    An ``EmailMessage`` whose earlier send never reached the ESP (an exception)
    keeps its row; one that was sent before gets a new row, so the first send
    keeps its ESP ids and events.
    """
    if getattr(message, ATTEMPT_ATTRIBUTE, None) is not None:
        # The outbox worker's hand-over: it recorded the message, set its recipients
        # "sending" and held back suppressed addresses for its whole batch at once
        # (outbox/worker.py).
        return
    pk = getattr(message, PK_ATTRIBUTE, None)
    reuse = (
        pk is not None
        and Recipient.objects.filter(message_id=pk).exists()
        and not Recipient.objects.filter(message_id=pk).exclude(esp_message_id="").exists()
    )
    if reuse:
        Message.objects.filter(pk=pk).update(esp_name=esp_name[:64])
        going = [address for address, _name in _addresses(message.recipients())]
        Recipient.objects.filter(message_id=pk, address__in=going).exclude(
            status__in=[rules.Status.CANCELLED, rules.Status.BLOCKED]
        ).update(status=rules.Status.SENDING, status_at=timezone.now())
    else:
        pk = record_message(message, esp_name=esp_name)
    suppress(message, pk)


def _send_reason(result: Any, new_status: str) -> str:
    if new_status in rules.FAILURES:
        return _("The ESP refused this recipient when the message was sent (%(status)s).") % {
            "status": result.status
        }
    return ""


@dataclass(frozen=True)
class Answer:
    """The ESP's answer to one message (anymail's ``message.anymail_status``), to store."""

    message_pk: int
    #: address -> anymail's ``AnymailRecipientStatus`` (``status.recipients``)
    recipients: dict[str, Any]
    esp_name: str = ""
    #: The outbox worker's attempt "in progress" (None: a direct send, a new attempt row).
    attempt_pk: int | None = None
    #: Kept on the attempt: the refusal of every recipient, or a note.
    error: str = ""


def on_post_send(sender: Any, message: Any, status: Any, esp_name: str, **kwargs: Any) -> None:
    """Store the ESP's per-recipient status and message id, then adopt orphans."""
    pk = getattr(message, PK_ATTRIBUTE, None)
    if pk is None:
        logger.warning("post_send for a message wagtail-maillog did not record: %r", message)
        return
    if getattr(message, ATTEMPT_ATTRIBUTE, None) is not None:
        return  # the outbox worker stores the answers of its batch together (outbox/worker.py)
    with transaction.atomic():
        store_answers([Answer(pk, dict(status.recipients or {}), esp_name)])


def store_answers(answers: list[Answer]) -> list[StatusChange]:
    """Store the ESP's answers to these messages: each recipient's status and ESP
    message id, each attempt "handed over" with the answer; then address health
    (``announce``) and the adoption of events that came first (orphans).

    The same statements for one message or a batch of them: the outbox worker
    stores a whole batch with one call. Call it inside a transaction.
    """
    if not answers:
        return []
    now = timezone.now()
    results = {
        answer.message_pk: {normalize(addr): rs for addr, rs in answer.recipients.items()}
        for answer in answers
    }
    changes: list[StatusChange] = []
    lock_esp_ids(
        str(rs.message_id)[:255]
        for found in results.values()
        for rs in found.values()
        if rs.message_id
    )
    locked = Recipient.objects.select_for_update(
        no_key=connection.features.has_select_for_no_key_update
    ).order_by("pk")
    recipients: list[Recipient] = []
    for rows in filter_in(locked, "message_id", sorted(results)):
        recipients.extend(rows)
    answered = []
    for r in recipients:
        result = results[r.message_id].get(r.address)
        if result is None:
            continue
        r.esp_message_id = "" if result.message_id is None else str(result.message_id)[:255]
        new = rules.status_for_send_result(result.status)
        before = r.status
        after = rules.transition(rules.Current(r.status, r.status_at), new, now)
        r.status, r.status_at = after.status, after.at
        if after.status == new:  # what an earlier attempt said is not why any more
            r.reason = _send_reason(result, new)
        if r.status != before:
            changes.append(StatusChange(r.pk, r.address, before, r.status, None, ""))
        answered.append(r)
    update_fields(answered, ["esp_message_id", "status", "status_at", "reason"])
    opened, new_rows = [], []
    for answer in answers:
        response = {
            addr: {
                "message_id": None if rs.message_id is None else str(rs.message_id),
                "status": rs.status,
            }
            for addr, rs in results[answer.message_pk].items()
        }
        if answer.attempt_pk is not None:  # the outbox worker opened this attempt
            opened.append(
                SendAttempt(
                    pk=answer.attempt_pk,
                    outcome=SendAttempt.Outcome.SENT,
                    response=response,
                    error=answer.error,
                )
            )
        else:
            new_rows.append(
                SendAttempt(
                    message_id=answer.message_pk,
                    at=now,
                    outcome=SendAttempt.Outcome.SENT,
                    connector=answer.esp_name[:64],
                    response=response,
                    error=answer.error,
                )
            )
    update_fields(opened, ["outcome", "response", "error"])
    if new_rows:
        SendAttempt.objects.bulk_create(new_rows)
    announce(changes)
    attach_orphans(answered)
    return changes


# ---- a hand-over that failed before anymail's post_send ---------------------


def _error_response(error: BaseException) -> dict[str, Any] | None:
    """The ESP's answer to a refused API call (status code and body), for the attempt row."""
    status_code = getattr(error, "status_code", None)
    response = getattr(error, "response", None)
    if status_code is None or response is None:
        return None
    try:
        body: Any = response.json()
    except Exception:  # not JSON, or no body at all
        body = str(getattr(response, "text", "") or "")[:4000]
    return storable.json_value({"status_code": status_code, "body": body})


def describe(error: BaseException) -> str:
    """``Type: message`` of an error, even one whose ``str()`` itself fails."""
    try:
        text = str(error)
    except Exception:  # e.g. an AnymailAPIError built without a response
        text = repr(getattr(error, "args", ()))
    return storable.text(f"{type(error).__name__}: {text}")[:4000]


def failure_reason(error: BaseException, esp_name: str = "") -> str:
    """What a recipient's "failed" says: the ESP's status code and message, or the
    connection error; anything else (an invalid address, an unsupported feature) as is."""
    esp = getattr(error, "esp_name", None) or esp_name or _("The ESP")
    status_code = getattr(error, "status_code", None)
    if status_code is not None:
        answer = _error_response(error) or {}
        body = answer.get("body")
        detail = ""  # the answer is cleaned already (_error_response)
        if isinstance(body, dict):
            # Postmark "Message", Mailgun "message", SendGrid/Brevo "errors"/"message", ...
            for key in ("Message", "message", "error", "errors", "detail"):
                if body.get(key):
                    detail = str(body[key])
                    break
        elif body:
            detail = str(body)
        return (
            _("%(esp)s refused the message (HTTP %(code)s): %(detail)s")
            % {"esp": esp, "code": status_code, "detail": detail or "-"}
        )[:2000]
    cause = error.__cause__
    if isinstance(cause, OSError):  # requests' ConnectionError, Timeout, ... (and socket errors)
        return (
            _("%(esp)s could not be reached: %(error)s")
            % {"esp": esp, "error": storable.text(f"{type(cause).__name__}: {cause}")}
        )[:2000]
    return _("The message could not be handed over: %(error)s") % {"error": describe(error)}


def _direct_send(message: Any) -> int | None:
    """The Message pk of a send anymail made outside the outbox (whose worker records its own
    outcome), or None."""
    if getattr(message, ATTEMPT_ATTRIBUTE, None) is not None:
        return None
    return getattr(message, PK_ATTRIBUTE, None)


def record_failure(message: Any, error: BaseException, esp_name: str) -> None:
    """anymail raised between ``pre_send`` and ``post_send``: the ESP refused the API call,
    could not be reached, or the message could not be built for it.

    Writes what the outbox worker writes for a failed attempt: a "failed" SendAttempt with
    the error (and the ESP's answer), and the recipients still "sending" become "failed"
    with the reason. Direct sends only; nothing when the ESP did answer (post_send stored it).
    """
    pk = _direct_send(message)
    status = getattr(message, "anymail_status", None)
    if pk is None or (status is not None and status.recipients):
        return
    reason = failure_reason(error, esp_name)
    now = timezone.now()
    with transaction.atomic():
        SendAttempt.objects.create(
            message_id=pk,
            at=now,
            outcome=SendAttempt.Outcome.FAILED,
            connector=esp_name[:64],
            error=describe(error),
            response=_error_response(error),
        )
        _leave_sending(pk, rules.Status.FAILED, reason, now)


def record_not_sent(message: Any, esp_name: str) -> None:
    """anymail returned without calling the ESP: a ``pre_send`` receiver cancelled the send
    (suppressed addresses are already "blocked"), or no recipient was left."""
    pk = _direct_send(message)
    if pk is None:
        return
    if not Recipient.objects.filter(message_id=pk, status=rules.Status.SENDING).exists():
        return  # suppression held every recipient back and recorded the blocked attempt
    now = timezone.now()
    with transaction.atomic():
        SendAttempt.objects.create(
            message_id=pk, at=now, outcome=SendAttempt.Outcome.BLOCKED, connector=esp_name[:64]
        )
        _leave_sending(
            pk,
            rules.Status.CANCELLED,
            _("The send was cancelled before it reached the ESP (a pre_send receiver)."),
            now,
        )


def _leave_sending(pk: int, status: str, reason: str, now: Any) -> None:
    rows = list(
        Recipient.objects.filter(message_id=pk, status=rules.Status.SENDING).values_list(
            "pk", "address"
        )
    )
    Recipient.objects.filter(pk__in=[r for r, _a in rows]).update(
        status=status, status_at=now, reason=reason
    )
    announce([StatusChange(r, a, rules.Status.SENDING, status, None, "") for r, a in rows])


def install_failure_hook() -> None:
    """Make every anymail backend report a failed hand-over, as configured by the site.

    anymail sends ``pre_send``, calls the ESP, then sends ``post_send``; when the call
    raises there is no signal at all, so the recipients ``pre_send`` recorded would stay
    "sending". This wraps ``AnymailBaseBackend._send`` (which every ESP backend runs)
    once, at start-up: a try/except around the original, no query when the send succeeds.
    The exception still reaches the caller unchanged.
    """
    from anymail.backends.base import AnymailBaseBackend

    original = getattr(AnymailBaseBackend, "_send", None)
    if original is None:  # an anymail that sends differently: say so, never break start-up
        logger.warning("anymail has no AnymailBaseBackend._send: failed sends are not recorded")
        return
    if getattr(original, "_maillog_hook", False):
        return

    @functools.wraps(original)
    def _send(self: Any, message: Any) -> bool:
        try:
            sent = original(self, message)
        except Exception as exc:
            try:
                record_failure(message, exc, getattr(self, "esp_name", "") or "")
            except Exception:  # recording must never hide the ESP's error
                logger.exception("Could not record the failed send of %r", message)
            raise
        if not sent:
            try:
                record_not_sent(message, getattr(self, "esp_name", "") or "")
            except Exception:
                logger.exception("Could not record the cancelled send of %r", message)
        return sent

    _send._maillog_hook = True  # type: ignore[attr-defined]
    AnymailBaseBackend._send = _send  # type: ignore[method-assign]
