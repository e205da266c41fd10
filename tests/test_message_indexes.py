"""The message table's keys that most mail has not (a related object, a user, a
team, a resend's original) are indexed where set only (migration 0015), and the
lookups by them are still answered by those indexes.

A mail with none of them writes four index entries fewer at ``send()``. The
lookups: an editor's own and team mail (the mail log's access filter), the
related-object panel, and the purge unlinking the resends of the mail it
deletes.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User
from django.contrib.contenttypes.models import ContentType
from django.db import connection

from tests.utils import index_definition, usable_plan
from wagtail_maillog.models import Event, Message, Recipient

pytestmark = pytest.mark.django_db

TABLE = Message._meta.db_table
#: Index name: its first column.
PARTIAL = {
    "maillog_msg_related": "content_type_id",
    "maillog_msg_creator": "created_by_id",
    "maillog_msg_team": "team_id",
    "maillog_msg_resent_from": "resent_from_id",
}


def indexes() -> dict[str, dict]:
    with connection.cursor() as cursor:
        found = connection.introspection.get_constraints(cursor, TABLE)
    return {name: info for name, info in found.items() if info["index"]}


def test_the_keys_most_mail_has_not_are_indexed_where_set():
    found = indexes()
    for name, column in PARTIAL.items():
        assert found[name]["columns"][0] == column, found[name]
        if connection.features.supports_partial_indexes:
            assert f"{column} IS NOT NULL" in index_definition(name, TABLE).replace('"', ""), name
    # resent_from has one index (Django's single-column one is gone; on MariaDB the
    # whole index serves the key's constraint instead of one of its own)
    alone = [name for name, info in found.items() if info["columns"] == ["resent_from_id"]]
    assert alone == ["maillog_msg_resent_from"]


def test_the_lookups_by_those_keys_use_their_partial_index():
    if not connection.features.supports_partial_indexes:
        pytest.skip("MariaDB/MySQL: whole indexes, as before")
    user = User.objects.create(username="editor")
    team = Group.objects.create(name="Team")
    kind = ContentType.objects.get_for_model(User)
    original = Message.objects.create(subject="original")
    Message.objects.bulk_create(
        [Message(subject=f"system {i}") for i in range(300)]
        + [
            Message(subject="own", created_by=user),
            Message(subject="team", team=team),
            Message(subject="related", content_type=kind, object_id=str(user.pk)),
            Message(subject="resend", resent_from=original),
        ]
    )
    lookups = {
        "maillog_msg_creator": Message.objects.filter(created_by=user).order_by("-created_at"),
        "maillog_msg_team": Message.objects.filter(team__in=[team]).order_by("-created_at"),
        "maillog_msg_related": Message.objects.filter(content_type=kind, object_id=str(user.pk)),
        "maillog_msg_resent_from": Message.objects.filter(resent_from_id__in=[original.pk]),
    }
    for name, queryset in lookups.items():
        shown = usable_plan(*queryset.query.sql_with_params())
        assert name in shown, shown
        assert queryset.count() == 1


@pytest.mark.parametrize("model", [Message, Recipient, Event])
def test_mariadb_is_not_warned_about_conditions_it_ignores(model):
    """Django creates the whole index there, which serves the same lookups."""
    errors = model.check(databases=[connection.alias])
    assert not [error for error in errors if error.id == "models.W037"], errors
