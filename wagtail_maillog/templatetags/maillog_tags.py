"""Template tags: a recipient's status badge, and the mails of any object.

{% load maillog_tags %}
{% maillog_status recipient.status %}
{% related_mails invoice %}
"""

from __future__ import annotations

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

from ..status import ENGAGED, FAILURES, OPENED_CAVEAT, Status

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
    title = OPENED_CAVEAT if status in ENGAGED else reason
    return badge(status, Status, appearance(status), title)


def related_log_url(obj: Any) -> str:
    ct = ContentType.objects.get_for_model(obj)
    query = urlencode({"related_type": ct.pk, "related_id": str(obj.pk)})
    return f"{reverse('wagtail_maillog:index')}?{query}"


def related_mail_context(obj: Any, user: Any, limit: int = 10) -> dict[str, Any]:
    """The newest mails about ``obj`` that ``user`` may see (for the tag and the panel)."""
    from ..admin.access import can_view_log, visible_recipients

    if obj is None or getattr(obj, "pk", None) is None or not can_view_log(user):
        return {"recipients": [], "allowed": False}
    ct = ContentType.objects.get_for_model(obj)
    qs = (
        visible_recipients(user)
        .filter(message__content_type=ct, message__object_id=str(obj.pk))
        .select_related("message")
        .order_by("-created_at", "-pk")
    )
    rows = list(qs[: limit + 1])
    return {
        "recipients": rows[:limit],
        "more": len(rows) > limit,
        "log_url": related_log_url(obj),
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
