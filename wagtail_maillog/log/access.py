"""Who may see and do what in the mail log.

Permissions (assign them to Wagtail groups in Settings → Groups):

* ``view_message``: open the mail log; see the mail you or your team created;
* ``view_all_mail``: see every message, including system mail;
* ``resend_message``, ``cancel_message``: the actions.

"Your team" is every Django group you belong to: mail created by any member of
one of your groups, or labelled with one of them as its team.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Q, QuerySet

from ..models import Message, Recipient

APP = "wagtail_maillog"
VIEW = f"{APP}.view_message"
VIEW_ALL = f"{APP}.view_all_mail"
RESEND = f"{APP}.resend_message"
CANCEL = f"{APP}.cancel_message"


def can_view_log(user: Any) -> bool:
    return bool(user and user.is_active and (user.has_perm(VIEW) or user.has_perm(VIEW_ALL)))


def _own_or_team(user: Any, prefix: str = "") -> Q:
    groups = user.groups.all()
    return (
        Q(**{f"{prefix}created_by": user})
        | Q(**{f"{prefix}team__in": groups})
        | Q(**{f"{prefix}created_by__groups__in": groups})
    )


def visible_messages(user: Any) -> QuerySet[Message]:
    qs = Message.objects.all()
    if user.has_perm(VIEW_ALL):
        return qs
    if not can_view_log(user):
        return qs.none()
    return qs.filter(pk__in=Message.objects.filter(_own_or_team(user)).values("pk"))


def visible_recipients(user: Any) -> QuerySet[Recipient]:
    qs = Recipient.objects.all()
    if user.has_perm(VIEW_ALL):
        return qs
    if not can_view_log(user):
        return qs.none()
    return qs.filter(message__in=Message.objects.filter(_own_or_team(user)).values("pk"))
