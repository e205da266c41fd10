"""PostgreSQL's recording of one message as a function (migration 0017), whose plans the
database session keeps: called once a session records mail again and again, writing
the rows its statement writes, and in step with the models (its body is the
migration's snapshot of the tables)."""

from __future__ import annotations

from datetime import datetime, timedelta
from types import SimpleNamespace

import pytest
from django.core.mail import EmailMessage, EmailMultiAlternatives
from django.db import connection
from django.utils import timezone

from tests.utils import assert_migration_creates
from wagtail_maillog import label, plans, recording
from wagtail_maillog.bulk import column_type
from wagtail_maillog.models import Message, OutboxItem, Recipient
from wagtail_maillog.models import SendState as S
from wagtail_maillog.outbox import connectors

OUTBOX = "wagtail_maillog.outbox.backend.OutboxBackend"
postgresql = pytest.mark.skipif(connection.vendor != "postgresql", reason="a PostgreSQL function")


@pytest.fixture
def outbox(settings):
    settings.EMAIL_BACKEND = OUTBOX
    settings.WAGTAIL_MAILLOG = {
        "CONNECTORS": {
            "default": {"BACKEND": "tests.esp.ScriptedBackend"},
            "off": {"BACKEND": "tests.esp.ScriptedBackend", "ENABLED": False},
        },
    }
    return settings


@pytest.fixture(params=["statement", "function"])
def path(request, monkeypatch) -> str:
    """Record by the statement, or by the function (as a session does from its sixth
    message on). One run, the statement's, elsewhere than on PostgreSQL."""
    if request.param == "function" and connection.vendor != "postgresql":
        pytest.skip("a PostgreSQL function")
    monkeypatch.setattr(plans, "repeats", lambda _connection, _name: request.param == "function")
    return request.param


def _function() -> tuple[list[str], list[str]] | None:
    """The function's argument names and types; None if there is none."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT proargnames, string_to_array(pg_get_function_identity_arguments(oid), ', ')"
            " FROM pg_proc WHERE proname = %s",
            [recording.RECORD_ONE],
        )
        found = cursor.fetchall()
    assert len(found) <= 1, found
    return found[0] if found else None


def _rows() -> list[dict]:
    """Every row the recording wrote, without keys and times (each path's own)."""
    leave = {"id", "message", "message_id", "created_at", "status_at", "next_attempt_at"}

    def plain(queryset):
        return [
            {k: v for k, v in row.items() if k not in leave}
            for row in queryset.order_by("pk").values()
        ]

    return [
        *plain(Message.objects.all()),
        *plain(Recipient.objects.all()),
        *plain(OutboxItem.objects.all()),
    ]


def _messages(later: datetime | None = None) -> list[EmailMessage]:
    """Mail of every shape queueing meets; ``later``: when the scheduled one goes."""
    plain = EmailMessage("Hello <b>", "Body", "Site <site@example.com>", ["ann@example.com"])
    several = EmailMultiAlternatives(
        "Several",
        "Text",
        "site@example.com",
        ["Ann <ann@example.com>", "bob@example.com"],
        cc=["carl@example.com"],
        bcc=["dora@example.com"],
        reply_to=["help@example.com"],
        headers={"X-Priority": "1", "X-Thing": "ü"},
    )
    several.attach_alternative("<p>HTML</p>", "text/html")
    several.attach("report.pdf", b"%PDF", "application/pdf")
    several.tags = ["news"]
    several.metadata = {"campaign": "7"}
    later = label(
        EmailMessage("Later", "Body", "site@example.com", ["eve@example.com"]),
        send_at=later or timezone.now() + timedelta(hours=1),
        source="later",
    )
    off = label(
        EmailMessage("Off", "Body", "site@example.com", ["fay@example.com"]), connector="off"
    )
    nobody = EmailMessage("Nobody", "Body", "site@example.com", [])
    return [plain, several, later, off, nobody]


@pytest.mark.django_db
@pytest.mark.usefixtures("outbox")
@pytest.mark.parametrize("switched_off", [False, True])
def test_queued_mail_of_every_shape(path, switched_off):
    if switched_off:
        connectors.set_enabled("default", False)
    for message in _messages():
        message.send()
    assert OutboxItem.objects.count() == 4  # Django sends no mail to nobody
    states = list(OutboxItem.objects.order_by("pk").values_list("state", flat=True))
    first = S.CONNECTOR_DISABLED if switched_off else S.QUEUED
    assert states == [first, first, S.SCHEDULED, S.CONNECTOR_DISABLED]
    several = Message.objects.get(subject="Several")
    assert list(several.recipients.order_by("pk").values_list("address", "name", "role")) == [
        ("ann@example.com", "Ann", "to"),
        ("bob@example.com", "", "to"),
        ("carl@example.com", "", "cc"),
        ("dora@example.com", "", "bcc"),
    ]
    assert (several.attachment_names, several.tags, several.importance) == (
        ["report.pdf"],
        ["news"],
        "high",
    )
    assert set(Recipient.objects.values_list("status", flat=True)) == {"pending"}
    assert Message.objects.get(subject="Later").source == "later"


@postgresql
@pytest.mark.django_db
@pytest.mark.usefixtures("outbox")
@pytest.mark.parametrize("switched_off", [False, True])
def test_the_function_writes_what_the_statement_writes(monkeypatch, switched_off):
    """The same mail, queued by the statement and by the function, gives the same rows
    (the admin's switch read by the function as by the statement's INSERT)."""
    if switched_off:
        connectors.set_enabled("default", False)
    written, later = {}, timezone.now() + timedelta(hours=1)
    for way in ("statement", "function"):
        monkeypatch.setattr(plans, "repeats", lambda _c, _n, way=way: way == "function")
        for message in _messages(later):
            message.send()
        written[way] = _rows()
        Message.objects.all().delete()
    assert len(written["function"]) == 4 + 7 + 4  # messages, recipients, outbox rows
    assert written["function"] == written["statement"]


@pytest.mark.django_db
def test_a_direct_send_is_recorded_without_an_outbox_row(path):
    """Mail sent without the outbox (anymail's pre_send records it): no outbox row."""
    message = EmailMessage("Direct", "Body", "site@example.com", ["ann@example.com", "b@x.org"])
    pk = recording.record_message(message, esp_name="postmark")
    assert Message.objects.get().pk == pk
    assert list(Recipient.objects.values_list("address", "status")) == [
        ("ann@example.com", "sending"),
        ("b@x.org", "sending"),
    ]
    assert not OutboxItem.objects.exists()


@postgresql
@pytest.mark.django_db
@pytest.mark.usefixtures("outbox")
def test_the_function_is_one_statement(monkeypatch):
    monkeypatch.setattr(plans, "repeats", lambda _c, _n: True)
    sent: list[str] = []

    def seen(execute, sql, params, many, context):
        sent.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(seen):
        EmailMessage("Hi", "Body", "site@example.com", ["ann@example.com"]).send()
    assert len(sent) == 1 and sent[0].startswith(f"SELECT {recording.RECORD_ONE}("), sent


@postgresql
@pytest.mark.django_db
def test_its_parameters_are_the_columns_of_the_models():
    """A field added to Message, Recipient or OutboxItem needs a migration that replaces
    the function: this fails until one does."""
    names, arguments = _function()
    given = dict(zip(names, [a.split(" ", 1)[1] for a in arguments], strict=True))
    spelled = {"varchar": "character varying", "timestamptz": "timestamp with time zone"}

    def columns(prefix, model, array=""):
        return {
            f"{prefix}{f.column}": spelled.get(t := column_type(f, connection), t) + array
            for f in model._meta.concrete_fields
            if not f.primary_key and f.name != "message"
        }

    state = column_type(OutboxItem._meta.get_field("state"), connection)
    assert given == {
        **columns("m_", Message),
        **columns("r_", Recipient, "[]"),
        **columns("o_", OutboxItem),
        "o_switch_off": spelled.get(state, state),
    }


@postgresql
@pytest.mark.django_db(transaction=True)
def test_the_migration_creates_and_drops_it():
    assert_migration_creates(_function, "0016")


def _session(max_age=0, pool=False):
    return SimpleNamespace(
        settings_dict={"CONN_MAX_AGE": max_age, "OPTIONS": {"pool": True} if pool else {}},
        connection=object(),
        ensure_connection=lambda: None,  # open already
    )


def test_a_session_calls_it_from_its_sixth_write_on():
    """psycopg's own rule for preparing: a write repeated in a session gets its plan
    kept; a new session (a closed connection opened again) starts from 0; each write
    is counted apart."""
    session = _session()
    assert [plans.repeats(session, "a") for _ in range(7)] == [False] * 5 + [True] * 2
    assert plans.repeats(session, "b") is False
    session.connection = object()  # closed, then opened again
    assert plans.repeats(session, "a") is False


@pytest.mark.parametrize(
    "kept", [_session(max_age=60), _session(max_age=None), _session(pool=True)]
)
def test_connections_that_outlive_the_request_call_it_at_once(kept):
    assert plans.repeats(kept, "a") is True
