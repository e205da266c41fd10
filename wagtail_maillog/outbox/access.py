"""Who may see and do what in the outbox, its four views, and remembered preferences.

Permissions (assign them to Wagtail groups in Settings → Groups):

* ``view_message`` (or ``view_all_mail``): open the outbox, as the mail log;
  without ``view_all_mail`` only the mail you or your team created is shown;
* ``retry_outboxitem``, ``cancel_outboxitem``: the actions;
* ``manage_connectors``: switch a connector off and on again;
* ``lead_team``: a team lead, who lands on "My team's emails" the first time.

"Your team", as in the mail log, is every Django group you belong to.
"""

from __future__ import annotations

import operator
from functools import reduce
from typing import Any

from django.contrib.auth import get_user_model
from django.db import connections, router
from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from ..log.access import APP, VIEW_ALL, can_view_log
from ..models import Message, OutboxItem, OutboxPreference

RETRY = f"{APP}.retry_outboxitem"
CANCEL = f"{APP}.cancel_outboxitem"
MANAGE_CONNECTORS = f"{APP}.manage_connectors"
LEAD_TEAM = f"{APP}.lead_team"

MINE, TEAM, SYSTEM, ALL = "mine", "team", "system", "all"
#: The views of the outbox, in the order of their tabs.
VIEWS: dict[str, Any] = {
    MINE: _("My emails"),
    TEAM: _("My team's emails"),
    SYSTEM: _("System emails"),
    ALL: _("All"),
}
#: Optional columns hidden until the user picks their own (keeps the table on screen).
DEFAULT_HIDDEN = (
    "importance",
    "system_generated",
    "last_attempt_at",
    "related",
    "related_type",
    "attachments",
)
PAGE_SIZES = (10, 25, 50, 100)
DEFAULT_PAGE_SIZE = 25
COUNT_ATTRIBUTE = "_maillog_outbox_count"
TEAM_ATTRIBUTE = "_maillog_team"


def can_view_outbox(user: Any) -> bool:
    """The outbox is open to whoever may open the mail log."""
    return can_view_log(user)


def _mail_of(*messages: QuerySet[Message]) -> Q:
    """Outbox items of any of these messages: one ``IN`` over a ``UNION``.

    Each part is a lookup in an index of the messages (``maillog_msg_team``,
    ``maillog_msg_creator``). One ``IN`` of the conditions OR-ed together read
    every message of the log (millions) on every admin page, since the menu
    badge counts the outbox; one ``IN`` per part made PostgreSQL test each
    outbox row against every part. MariaDB runs an ``IN`` over a ``UNION`` again for
    every outbox row (27 ms for an editor's badge at a million messages): there,
    an ``EXISTS`` per part looks the row's message up by its key instead (1 ms).
    """
    if connections[router.db_for_read(OutboxItem)].vendor == "mysql":
        parts = [Q(Exists(m.filter(pk=OuterRef("message_id")))) for m in messages]
        return reduce(operator.or_, parts)
    first, *others = (m.values("pk") for m in messages)
    return Q(message__in=first.union(*others) if others else first)


def _team_of(user: Any) -> tuple[list[int], list[int]]:
    """``user``'s group ids and the ids of everyone in them (``user`` too, if in one).

    Read once per request (kept on the user object): as literal ids, the outbox
    queries plan in a fraction of the time of nested subqueries of the groups.
    """
    team = getattr(user, TEAM_ATTRIBUTE, None)
    if team is None:
        memberships = get_user_model().groups.through.objects
        pairs = memberships.filter(
            group_id__in=memberships.filter(user_id=user.pk).values("group_id")
        ).values_list("group_id", "user_id")
        groups, members = set(), set()
        for group, member in pairs:
            groups.add(group)
            members.add(member)
        team = (sorted(groups), sorted(members))
        setattr(user, TEAM_ATTRIBUTE, team)
    return team


def _team_mail(user: Any, own: bool = False) -> Q:
    """Outbox items of messages labelled with one of ``user``'s groups or created by
    a member of one (the team part of :func:`.access._own_or_team`); with ``own``,
    also those ``user`` created."""
    groups, members = _team_of(user)
    creators = sorted({user.pk, *members}) if own else members
    return _mail_of(
        Message.objects.filter(created_by__in=creators),
        Message.objects.filter(team__in=groups),
    )


def visible_outbox(user: Any) -> QuerySet[OutboxItem]:
    """Every outbox item ``user`` may see (none without the view permission)."""
    qs = OutboxItem.objects.all()
    if not can_view_outbox(user):
        return qs.none()
    if user.has_perm(VIEW_ALL):
        return qs
    return qs.filter(_team_mail(user, own=True))


def view_filter(user: Any, view: str) -> Q:
    """The condition of one view, to apply on top of :func:`visible_outbox`."""
    if view == MINE:
        return Q(message__created_by=user)
    if view == TEAM:
        return _team_mail(user)
    if view == SYSTEM:
        return Q(message__system_generated=True)
    return Q()


def view_counts(user: Any) -> dict[str, int]:
    """How many items each view holds, in one query."""
    counts = visible_outbox(user).aggregate(
        **{
            view: Count("pk", filter=view_filter(user, view)) if view != ALL else Count("pk")
            for view in VIEWS
        }
    )
    return {view: counts[view] or 0 for view in VIEWS}


def outbox_count(request: HttpRequest) -> int:
    """The number shown in the menu: one COUNT per request, remembered on the request."""
    count = getattr(request, COUNT_ATTRIBUTE, None)
    if count is None:
        count = visible_outbox(request.user).count()
        setattr(request, COUNT_ATTRIBUTE, count)
    return count


def default_view(user: Any) -> str:
    """Team leads first see their team's mail; everybody else their own."""
    return TEAM if user.has_perm(LEAD_TEAM) else MINE


def opening_view(user: Any, counts: dict[str, int]) -> str:
    """The view the outbox opens on for a user with no remembered choice.

    :func:`default_view` if it holds mail, else the first view (in tab order)
    that does: a superuser with no mail of their own lands on "System emails"
    rather than on an empty tab. ``counts`` is :func:`view_counts`.
    """
    first = default_view(user)
    if counts.get(first):
        return first
    return next((view for view in VIEWS if counts.get(view)), first)


def preference(user: Any) -> OutboxPreference:
    """The user's saved outbox preference, or an unsaved one with the defaults.

    ``columns`` holds the optional columns the user *hid*, so that a column
    added in a later version shows up for everyone.
    """
    saved = OutboxPreference.objects.filter(user=user).first()
    if saved is not None:
        return saved
    return OutboxPreference(
        user=user, view="", page_size=DEFAULT_PAGE_SIZE, columns=list(DEFAULT_HIDDEN)
    )


def save_preference(pref: OutboxPreference, **changes: Any) -> None:
    """Store ``changes`` (view, page_size, columns) if they change anything."""
    if all(getattr(pref, field) == value for field, value in changes.items()):
        return
    for field, value in changes.items():
        setattr(pref, field, value)
    if pref.pk is None:
        pref, _created = OutboxPreference.objects.update_or_create(
            user=pref.user,
            defaults={"view": pref.view, "page_size": pref.page_size, "columns": pref.columns},
        )
    else:
        pref.save(update_fields=list(changes))
