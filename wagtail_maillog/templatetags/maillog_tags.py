"""Template tags: a recipient's status badge, and the mails of any object.

{% load maillog_tags %}
{% maillog_status recipient.status %}
{% related_mails invoice %}
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

from django import template
from django.contrib.contenttypes.models import ContentType
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.html import format_html
from django.utils.http import urlencode
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext_lazy as _

from ..conf import get_setting
from ..status import DELIVERED_CAVEAT, ENGAGED, FAILURES, OPENED_CAVEAT, Status

register = template.Library()

#: status -> (Wagtail icon, tone). Tones map to colours in maillog.css.
APPEARANCE: dict[str, tuple[str, str]] = {
    Status.NONE: ("radio-empty", "neutral"),
    Status.PENDING: ("time", "waiting"),
    Status.SENDING: ("time", "waiting"),
    Status.UNKNOWN: ("help", "neutral"),
    Status.QUEUED: ("time", "waiting"),
    Status.SENT: ("mail", "neutral"),
    Status.DEFERRED: ("warning", "warning"),
    Status.DELIVERED: ("success", "positive"),
    Status.OPENED: ("view", "positive"),
    Status.CLICKED: ("link", "positive"),
    Status.CANCELLED: ("cross", "neutral"),
}


def appearance(status: str) -> tuple[str, str]:
    if status in APPEARANCE:
        return APPEARANCE[status]
    return ("error", "critical") if status in FAILURES else ("help", "neutral")


EVENT_LABELS = {
    "autoresponded": _("Auto-reply"),
    "subscribed": _("Subscribed"),
    "unknown": _("Unknown event"),
}


@register.filter
def event_label(event_type: str) -> str:
    """A translated name for an anymail event type."""
    if event_type in EVENT_LABELS:
        return str(EVENT_LABELS[event_type])
    try:
        return str(Status(event_type).label)
    except ValueError:
        return event_type.replace("_", " ").capitalize()


#: Deferred mail, told apart (seed 001): the receiving server refused it for now, or
#: the ESP put the sending off itself. docs/statuses.md gives the rule.
DEFERRED_KINDS = {
    "temporary_bounce": _("Temporary bounce"),
    "postponed": _("Postponed"),
}
DEFERRED_KIND_HELP = {
    "temporary_bounce": _(
        "The receiving server refused the mail for now (a full mailbox, a network "
        "problem). The ESP keeps trying; it becomes Bounced when the ESP gives up or "
        "after %(days)d days."
    ),
    "postponed": _(
        "The ESP put the sending off (its own queue or a sending limit); the receiving "
        "server has not refused it. The status will change."
    ),
}
#: An SMTP temporary failure: a 4xx reply code or a 4.x.x enhanced status code.
_SMTP_TEMPORARY = re.compile(r"^\s*4\d\d\b|(?<![\d.])4\.\d{1,3}\.\d{1,3}\b")
#: Keys of ESP payloads that name the kind of a delay or bounce, and the values (lower
#: case, letters only) that mean a refusal by the receiving server.
_KIND_KEYS = {"type", "severity", "delaytype", "bouncetype", "bounceclass"}
_SOFT_BOUNCE_VALUES = {
    "softbounce",  # Postmark
    "transient",  # Postmark, Amazon SES
    "temporary",  # Mailgun
    "mailboxfull",  # Amazon SES delivery delay
    "transientcommunicationfailure",  # Amazon SES
}


def _raw_says_soft_bounce(raw: Any, depth: int = 0) -> bool:
    if depth > 3:
        return False
    if isinstance(raw, list):
        return any(_raw_says_soft_bounce(item, depth + 1) for item in raw[:10])
    if not isinstance(raw, dict):
        return False
    for key, value in raw.items():
        if isinstance(value, (dict, list)):
            if _raw_says_soft_bounce(value, depth + 1):
                return True
        elif _letters(key) in _KIND_KEYS and _letters(value) in _SOFT_BOUNCE_VALUES:
            return True
    return False


def _letters(value: Any) -> str:
    return re.sub(r"[^a-z]", "", str(value).lower())


def deferred_kind(event: Any) -> str:
    """``"temporary_bounce"`` or ``"postponed"`` for a ``deferred`` event.

    A temporary bounce when the event shows a refusal by the receiving server: an SMTP
    4xx answer in anymail's ``mta_response``, anymail's ``reject_reason`` "bounced", or
    the ESP's own payload calling it a soft/transient/temporary bounce. Otherwise the
    ESP put the sending off itself: postponed.
    """
    if _SMTP_TEMPORARY.search(event.mta_response or "") or event.reject_reason == "bounced":
        return "temporary_bounce"
    return "temporary_bounce" if _raw_says_soft_bounce(event.raw) else "postponed"


@register.inclusion_tag("wagtail_maillog/includes/deferred_kind.html")
def maillog_deferred_kind(recipient: Any = None, event: Any = None) -> dict[str, Any]:
    """Which kind of deferred a recipient's (or an event's) "Deferred" is.

    For a recipient, its latest ``deferred`` event decides (one query, only for
    deferred recipients, on the message page).
    """
    if event is None and recipient is not None and recipient.status == Status.DEFERRED:
        event = recipient.events.filter(event_type=Status.DEFERRED).order_by("-pk").first()
    if event is None or event.event_type != Status.DEFERRED:
        return {"kind": ""}
    kind = deferred_kind(event)
    help_text = DEFERRED_KIND_HELP[kind]
    if kind == "temporary_bounce":
        help_text = str(help_text) % {"days": get_setting("DEFERRED_BOUNCE_DAYS")}
    return {"kind": kind, "label": DEFERRED_KINDS[kind], "help": help_text}


@register.filter
def pretty_json(value: Any) -> str:
    """An ESP payload as indented JSON, its keys in the order they were stored.

    (PostgreSQL's ``jsonb`` keeps its own key order; other databases keep the ESP's.)
    """
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


@register.simple_tag
def maillog_status(status: str, reason: str = "") -> SafeString:
    return status_badge(status, reason)


def badge(
    value: str,
    choices: Any,
    look: tuple[str, str],
    title: str = "",
    kind: str = "status",
) -> SafeString:
    """A status-like value as icon and label, coloured by ``look`` = (icon, tone).

    ``choices`` (a TextChoices) gives the label; ``kind`` names the data
    attribute (``data-status``, ``data-address-status``) tests and scripts use.
    """
    try:
        label = choices(value).label
    except ValueError:
        label = value
    icon, tone = look
    return format_html(
        '<span class="maillog-status maillog-status--{}{}" data-{}="{}"{}>{}'
        '<span class="maillog-status__label">{}</span></span>',
        tone,
        "" if kind == "status" else f" maillog-{kind}",
        kind,
        value,
        format_html(' title="{}"', title) if title else "",
        _icon(icon),
        label,
    )


@lru_cache(maxsize=64)
def _icon(name: str) -> SafeString:
    """Wagtail's icon markup (its ``{% icon %}`` template), rendered once per name: a
    list page shows a badge in each of its 50 rows."""
    return mark_safe(  # noqa: S308 (Wagtail's own template output)
        render_to_string(
            "wagtailadmin/shared/icon.html",
            {"name": name, "classname": "maillog-status__icon", "title": None, "wrapped": False},
        ).strip()
    )


def status_badge(status: str, reason: str = "") -> SafeString:
    """A recipient's status; the reason (or the "opened" caveat) as a tooltip."""
    if status in ENGAGED:
        title = OPENED_CAVEAT
    elif status == Status.DELIVERED:
        title = DELIVERED_CAVEAT
    else:
        title = reason
    return badge(status, Status, appearance(status), title)


def related_log_url(obj: Any) -> str:
    ct = ContentType.objects.get_for_model(obj)
    query = urlencode({"related_type": ct.pk, "related_id": str(obj.pk)})
    return f"{reverse('wagtail_maillog:index')}?{query}"


def address_log_url(address: str) -> str:
    """The mail log searched for a whole address: an index lookup, that address only."""
    return f"{reverse('wagtail_maillog:index')}?{urlencode({'q': address})}"


def _newest(queryset: Any, count: int) -> list[Any]:
    return list(queryset.select_related("message").order_by("-created_at", "-pk")[:count])


def related_mail_context(obj: Any, user: Any, limit: int = 10) -> dict[str, Any]:
    """The newest mails about ``obj`` that ``user`` may see (for the tag and the panel).

    For a registered member (``addresses.members``), the mail sent to the member's
    address counts too. Two queries, each answered by its own index (the message's
    related object; the recipient's address and date), merged here: an ``OR`` of
    the two would make the database read every recipient of the log.
    """
    from ..addresses import members
    from ..log.access import can_view_log, visible_recipients

    if obj is None or getattr(obj, "pk", None) is None or not can_view_log(user):
        return {"recipients": [], "allowed": False}
    ct = ContentType.objects.get_for_model(obj)
    visible = visible_recipients(user)
    rows = _newest(
        visible.filter(message__content_type=ct, message__object_id=str(obj.pk)), limit + 1
    )
    related = bool(rows)
    address = members.address_of(obj)  # "" unless obj is a registered member
    if address:
        # The newest limit + 1 of the union are among the newest limit + 1 of each part.
        seen = {r.pk for r in rows}
        rows += [r for r in _newest(visible.filter(address=address), limit + 1) if r.pk not in seen]
        rows.sort(key=lambda r: (r.created_at, r.pk), reverse=True)
    return {
        "recipients": rows[:limit],
        "more": len(rows) > limit,
        "log_url": related_log_url(obj),
        "member_address": address,
        "address_log_url": address_log_url(address) if address else "",
        "has_related": related,
        "allowed": True,
    }


@register.inclusion_tag("wagtail_maillog/related_mails.html", takes_context=True)
def related_mails(context: dict[str, Any], obj: Any, limit: int = 10) -> dict[str, Any]:
    request = context.get("request")
    user = getattr(request, "user", None)
    return related_mail_context(obj, user, limit)


@register.inclusion_tag("wagtailadmin/shared/buttons.html", takes_context=True)
def maillog_bulk_action_choices(context: Any, app_label: str, model_name: str) -> dict[str, Any]:
    """Wagtail's bulk action buttons, without those the user has no permission for.

    Wagtail shows every registered action; ours name their ``permission``.
    """
    from wagtail.admin.templatetags.wagtailadmin_tags import bulk_action_choices
    from wagtail.admin.views.bulk_action.registry import bulk_action_registry

    user = context["request"].user
    refused = {
        action.action_type
        for action in bulk_action_registry.get_bulk_actions_for_model(app_label, model_name)
        if getattr(action, "permission", "") and not user.has_perm(action.permission)
    }
    choices = bulk_action_choices(context, app_label, model_name)
    choices["buttons"] = [
        button
        for button in choices["buttons"]
        if str(getattr(button, "url", "") or "").rstrip("/").rsplit("/", 1)[-1] not in refused
    ]
    return choices
