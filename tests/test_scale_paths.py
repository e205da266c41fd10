"""The paths made fast for large logs (docs/performance.md) behave as the slow ones did:
plain-value rows for set-based writes, the capped count of the mail log, the
filter choices read by index, the resends of a message in order."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from django.contrib.auth.models import User
from django.contrib.contenttypes.models import ContentType
from django.core.mail import EmailMessage
from django.db import connection
from django.db.models import JSONField
from django.utils import timezone

from tests.testapp.models import Invoice
from tests.utils import client_for, tracking_event
from wagtail_maillog import bulk
from wagtail_maillog.events import EventRow, event_row, insert_events
from wagtail_maillog.log import views
from wagtail_maillog.log.filters import MailLogFilterSet, _distinct_by_index
from wagtail_maillog.models import Event, Message, Recipient

pytestmark = pytest.mark.django_db

LOG = "/admin/maillog/"
AWARE = datetime(2026, 3, 29, 1, 30, 15, 123456, tzinfo=UTC)
VALUES = [
    None,
    "",
    "plain",
    "ünïcödé ✓",
    7,
    AWARE,
    AWARE.astimezone(timezone.get_fixed_timezone(-300)),
    {"a": [1, 2.5, None, "x"], "b": {"c": True}},
    ["list"],
]


def _same(converted, expected) -> bool:
    if hasattr(expected, "obj"):  # psycopg's Jsonb wrapper: compare what it wraps
        return type(converted) is type(expected) and converted.obj == expected.obj
    return converted == expected and type(converted) is type(expected)


@pytest.mark.parametrize("model", [Event, Recipient, Message])
def test_a_converter_gives_what_get_db_prep_save_gives(model):
    for field in model._meta.concrete_fields:
        convert = bulk.converter(field, connection)
        for value in VALUES:
            try:
                expected = field.get_db_prep_save(value, connection)
            except Exception as refused:  # the converter refuses it the same way
                with pytest.raises(type(refused)):
                    convert(value)
                continue
            assert _same(convert(value), expected), (field.name, value)


def test_a_naive_datetime_is_made_aware_as_django_does(settings):
    field = Event._meta.get_field("timestamp")
    naive = datetime(2026, 3, 29, 1, 30)
    with pytest.warns(RuntimeWarning):
        expected = field.get_db_prep_save(naive, connection)
    with pytest.warns(RuntimeWarning):
        assert bulk.converter(field, connection)(naive) == expected


def _tracking(**kwargs):
    nested = {"type": "delivery", "nested": {"n": 1.5, "list": [1, "ü"]}}
    defaults = {"timestamp": AWARE, "recipient": "Ann@Example.com ", "mta_response": "250 OK"}
    return tracking_event(**{**defaults, "esp_event": nested, **kwargs})


def test_event_rows_are_stored_as_event_instances_were():
    recipient = Message.objects.create(subject="x").recipients.create(
        address="ann@example.com", esp_message_id="esp-1"
    )
    row = event_row(_tracking(), "SparkPost")
    row.recipient = recipient
    before = timezone.now()
    insert_events([row])
    stored = Event.objects.get()
    assert stored.recipient == recipient
    assert stored.address == "ann@example.com" and stored.esp_name == "SparkPost"
    assert stored.timestamp == AWARE and stored.mta_response == "250 OK"
    assert stored.description == "" and stored.reject_reason == ""
    assert stored.raw == {"type": "delivery", "nested": {"n": 1.5, "list": [1, "ü"]}}
    assert before <= stored.received_at <= timezone.now()
    assert stored.dedupe_key == row.dedupe_key
    # the same event again is skipped, not an error
    insert_events([event_row(_tracking(), "SparkPost")])
    assert Event.objects.count() == 1


def test_the_raw_json_text_is_what_the_json_field_writes():
    row = event_row(_tracking(esp_event={"é": "\u2028", "n": 10**20}), "SparkPost")
    insert_events([row])
    with connection.cursor() as cursor:
        cursor.execute("SELECT raw FROM wagtail_maillog_event")
        (stored,) = cursor.fetchone()
    if connection.vendor == "sqlite":  # the text itself, as the field encodes it
        assert stored == Event._meta.get_field("raw").get_db_prep_save(row.raw, connection)
    else:  # psycopg parses a json column itself
        assert (json.loads(stored) if isinstance(stored, str) else stored) == row.raw
    assert isinstance(Event._meta.get_field("raw"), JSONField)


def test_update_fields_takes_plain_objects_with_the_model_named():
    message = Message.objects.create(subject="x")
    r1 = message.recipients.create(address="a@example.com")
    r2 = message.recipients.create(address="b@example.com")
    at = AWARE
    states = [
        SimpleNamespace(pk=r1.pk, status="bounced", status_at=at, opened_at=None, reason="550"),
        SimpleNamespace(pk=r2.pk, status="opened", status_at=at, opened_at=at, reason=""),
    ]
    bulk.update_fields(states, ["status", "status_at", "opened_at", "reason"], model=Recipient)
    r1.refresh_from_db()
    r2.refresh_from_db()
    assert (r1.status, r1.status_at, r1.opened_at, r1.reason) == ("bounced", at, None, "550")
    assert (r2.status, r2.opened_at) == ("opened", at)


def test_insert_rows_defaults_unnamed_fields_per_row():
    message = Message.objects.create(subject="x")
    bulk.insert_rows(
        Recipient, ["message", "address"], [(message.pk, "a@x.org"), (message.pk, "b@x.org")]
    )
    rows = list(message.recipients.order_by("address"))
    assert [r.address for r in rows] == ["a@x.org", "b@x.org"]
    assert all(r.status == "none" and r.role == "to" and r.created_at for r in rows)


def test_event_row_is_a_plain_row():
    row = event_row(_tracking(), "SparkPost")
    assert isinstance(row, EventRow)
    assert len(row.values()) == len(EventRow.COLUMNS)


# ---- the mail log at scale --------------------------------------------------------


@pytest.fixture
def admin():
    return client_for(User.objects.create_superuser("admin", "admin@example.com", "pw"))


def _send(count: int, subject: str = "Hello") -> None:
    for i in range(count):
        EmailMessage(f"{subject} {i}", "b", "a@example.com", [f"r{i}@example.com"]).send()


def test_the_count_stops_at_its_cap_and_says_so(admin, monkeypatch):
    monkeypatch.setattr(views.CappedPaginator, "cap", 3)
    monkeypatch.setattr(views.MailLogIndexView, "paginate_by", 2)
    _send(20)
    page = admin.get(LOG)
    # counted to (page 1 + 5 pages) * 2 rows, and one more to know there is more
    assert page.context["paginator"].count == 13
    assert page.context["count_capped"] is True
    assert "More than 12 recipients" in page.content.decode()
    searched = admin.get(LOG + "?q=example.com").content.decode()
    assert "There are more than 12 matches" in searched
    # a later page counts further, here to the end
    later = admin.get(LOG + "?p=6")
    assert later.context["page_obj"].number == 6
    assert later.context["count_capped"] is False and later.context["paginator"].count == 20
    assert len(later.context["table"].rows) == 2


def test_below_the_cap_the_count_is_exact(admin):
    _send(3)
    page = admin.get(LOG + "?q=example.com")
    assert page.context["paginator"].count == 3 and page.context["count_capped"] is False
    assert "There are 3 matches" in page.content.decode()


def test_filter_choices_read_by_index_are_the_distinct_values(admin):
    invoice_type = ContentType.objects.get_for_model(Invoice)
    for source, esp in (
        ("newsletter", "Postmark"),
        ("invoice", "SparkPost"),
        ("", ""),
        ("invoice", ""),
    ):
        Message.objects.create(
            subject="s",
            source=source,
            esp_name=esp,
            content_type=invoice_type if source == "invoice" else None,
            object_id="7",
        )
    for field in ("source", "esp_name"):
        expected = sorted(set(Message.objects.exclude(**{field: ""}).values_list(field, flat=True)))
        assert _distinct_by_index(field) == expected
    assert _distinct_by_index("content_type") == [invoice_type.pk]
    filters = MailLogFilterSet(data={}, request=admin.get(LOG).wsgi_request)
    assert [v for v, _label in filters.filters["source"].extra["choices"]] == [
        "invoice",
        "newsletter",
    ]
    assert filters.filters["related"].extra["choices"] == [(invoice_type.pk, "Invoice")]


def test_resends_are_listed_oldest_first(admin):
    original = Message.objects.create(subject="Original", body_stored=True)
    now = timezone.now()
    later = Message.objects.create(subject="B", resent_from=original, created_at=now)
    earlier = Message.objects.create(
        subject="A", resent_from=original, created_at=now - timedelta(hours=1)
    )
    page = admin.get(f"{LOG}{original.pk}/")
    assert page.context["resends"] == [earlier, later]
