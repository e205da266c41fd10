"""Helpers shared by the tests."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from anymail.message import AnymailRecipientStatus
from django.contrib.auth.models import Group, Permission, User
from django.core.mail import EmailMessage
from django.db import connection
from django.test import Client

from wagtail_maillog.models import Message


def send_with_ids(
    to: list[str], esp_ids: dict[str, str] | str, subject: str = "Hello", **kwargs: Any
) -> Message:
    """Send through anymail's test backend, as if the ESP answered with these ids."""
    msg = EmailMessage(subject, "Body", "site@example.com", to, **kwargs)
    ids = esp_ids if isinstance(esp_ids, dict) else dict.fromkeys(to, esp_ids)
    msg.anymail_test_response = {
        "recipient_status": {
            addr: AnymailRecipientStatus(message_id=ids[addr], status="queued")
            for addr in msg.recipients()
        }
    }
    msg.send()
    return Message.objects.get(pk=msg._maillog_pk)


def post_json(client: Any, url: str, payload: Any, auth: dict[str, str]) -> Any:
    return client.post(url, data=json.dumps(payload), content_type="application/json", **auth)


def make_user(
    name: str, *perms: str, groups: tuple[Group, ...] = (), domain: str = "example.com"
) -> User:
    """A Wagtail admin user with these wagtail_maillog permissions."""
    user = User.objects.create_user(name, f"{name}@{domain}", "pw")
    user.user_permissions.add(Permission.objects.get(codename="access_admin"))
    for codename in perms:
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label="wagtail_maillog", codename=codename)
        )
    user.groups.add(*groups)
    return user


def client_for(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def denied(response: Any) -> bool:
    """Wagtail's answer to a PermissionDenied in its admin: back to the dashboard."""
    return response.status_code == 302 and response["Location"] == "/admin/"


#: For tests whose worker processes (a real django-q2 cluster) must see the test's
#: rows: the in-memory SQLite database of a test run is this process's alone.
needs_shared_database = pytest.mark.skipif(
    os.environ.get("MAILLOG_TEST_DB") not in ("postgres", "mysql"),
    reason="needs a database shared by several processes: the PostgreSQL and MariaDB passes",
)


def tracking_event(**fields: Any) -> Any:
    """A stand-in for anymail's ``AnymailTrackingEvent``: a delivery unless told otherwise."""
    from types import SimpleNamespace

    base = dict(
        event_type="delivered",
        timestamp=None,
        event_id="ev-1",
        message_id="esp-1",
        recipient="ann@example.com",
        description=None,
        mta_response=None,
        reject_reason=None,
        click_url=None,
        user_agent=None,
        esp_event={"type": "delivery"},
    )
    return SimpleNamespace(**{**base, **fields})


class Statements:
    """Statements this connection sent to the database server.

    Django counts one ``executemany`` as one query, but mysqlclient sends an
    UPDATE once per row: on MariaDB/MySQL only the server's own count
    (``Questions``) shows it. On SQLite and PostgreSQL, Django's count.
    ``with Statements() as sent: ...`` then ``sent.count``.
    """

    def __init__(self, using: str = "default") -> None:
        from django.db import connections

        self.connection = connections[using]

    def _questions(self) -> int:
        with self.connection.cursor() as cursor:
            cursor.execute("SHOW SESSION STATUS LIKE 'Questions'")
            return int(cursor.fetchone()[1])

    def __enter__(self) -> Statements:
        if self.connection.vendor == "mysql":
            self.start = self._questions()
        else:
            from django.test.utils import CaptureQueriesContext

            self.captured = CaptureQueriesContext(self.connection).__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.connection.vendor == "mysql":
            self.count = self._questions() - self.start - 1  # not the SHOW itself
        else:
            self.captured.__exit__(*exc)
            self.count = len(self.captured)


def plan(sql: str, params: Any = None) -> str:
    """The database's plan of ``sql`` (its parameters in it, or ``params``), as one text."""
    explain = "EXPLAIN QUERY PLAN " if connection.vendor == "sqlite" else "EXPLAIN "
    with connection.cursor() as cursor:
        cursor.execute(explain + sql, params)
        return "\n".join(" ".join(str(value) for value in row) for row in cursor.fetchall())


def usable_plan(sql: str, params: Any = None) -> str:
    """:func:`plan`, with PostgreSQL's sequential scans off (for the rest of the test's
    transaction): whether an index can serve the query at all, on a test's few rows."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_seqscan = off")
    return plan(sql, params)


def index_definition(name: str, table: str) -> str:
    """The index's SQL as SQLite or PostgreSQL keeps it, '' if there is none; on
    MariaDB/MySQL (no SQL kept) its name if ``table`` has it."""
    kept = {
        "sqlite": "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = %s",
        "postgresql": "SELECT indexdef FROM pg_indexes WHERE indexname = %s",
    }.get(connection.vendor)
    with connection.cursor() as cursor:
        if kept is None:
            return name if name in connection.introspection.get_constraints(cursor, table) else ""
        cursor.execute(kept, [name])
        row = cursor.fetchone()
    return row[0] if row else ""


def assert_migration_creates(found: Any, before: str, meanwhile: Any = None) -> None:
    """``found()`` (what a migration creates) is there at the head, gone once migrated
    back to ``before``, and there again after migrating forward; ``meanwhile()`` runs
    while migrated back."""
    from django.core.management import call_command

    assert found()
    try:
        call_command("migrate", "wagtail_maillog", before, verbosity=0)
        assert not found()
        if meanwhile is not None:
            meanwhile()
    finally:
        call_command("migrate", "wagtail_maillog", verbosity=0)
    assert found()
