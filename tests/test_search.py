"""The mail log's search: what it finds, and (on PostgreSQL) that indexes can answer it."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.core.checks import run_checks
from django.db import connection
from django.urls import reverse

from tests.utils import client_for, send_with_ids, usable_plan
from wagtail_maillog.checks import missing_search_indexes
from wagtail_maillog.log import search
from wagtail_maillog.models import Message, Recipient

pytestmark = pytest.mark.django_db

LOG = "/admin/maillog/"
on_postgres = pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL only")


@pytest.fixture
def log():
    send_with_ids(["ann@example.com"], "id-1", subject="Welcome Ann")
    send_with_ids(["joann@example.com"], "id-2", subject="Your invoice 2026-11")
    send_with_ids(["bob@example.org", "carol@example.org"], "id-3", subject="Invoice for Bob")
    send_with_ids(["dave@example.net"], "id-4", subject="Password reset")


def found(query: str) -> set[str]:
    matched = search.search_recipients(Recipient.objects.all(), query)
    return set(matched.values_list("address", flat=True))


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        # A whole address is that address only, whatever its case.
        ("ann@example.com", {"ann@example.com"}),
        ("  ANN@Example.COM ", {"ann@example.com"}),
        # Part of an address: every address containing it.
        ("ann@", {"ann@example.com", "joann@example.com"}),
        ("@example.org", {"bob@example.org", "carol@example.org"}),
        ("example.net", {"dave@example.net"}),
        # Words of a subject: every recipient of those messages.
        ("invoice", {"joann@example.com", "bob@example.org", "carol@example.org"}),
        ("WELCOME", {"ann@example.com"}),
        # Address or subject.
        ("bob", {"bob@example.org", "carol@example.org"}),
        ("nothing like this", set()),
        (
            "",
            {
                f"{n}@example.{d}"
                for n, d in [
                    ("ann", "com"),
                    ("joann", "com"),
                    ("bob", "org"),
                    ("carol", "org"),
                    ("dave", "net"),
                ]
            },
        ),
    ],
)
def test_what_a_search_finds(log, query, expected):
    assert found(query) == expected


def test_many_subject_matches_find_the_same_as_few(log, monkeypatch):
    """Past SUBJECT_IDS_MAX messages the subject side is a subquery: same rows."""
    few = found("invoice")
    monkeypatch.setattr(search, "SUBJECT_IDS_MAX", 1)
    assert found("invoice") == few
    monkeypatch.setattr(search, "SUBJECT_IDS_MAX", 0)
    assert found("o") == set(Recipient.objects.values_list("address", flat=True))


def test_the_listing_and_select_all_use_the_search(log):
    admin = client_for(User.objects.create_superuser("admin", "admin@example.com", "pw"))
    response = admin.get(LOG, {"q": "Ann@Example.com"})
    assert [row.record.address for row in response.context["table"].rows] == ["ann@example.com"]
    url = reverse("wagtail_bulk_action", args=["wagtail_maillog", "recipient", "resend"])
    confirm = admin.get(url, {"id": "all", "q": "ann@"})
    body = confirm.content.decode()
    assert "joann@example.com" in body and "ann@example.com" in body
    assert "bob@example.org" not in body


@on_postgres
def test_trigram_indexes_answer_the_search_on_postgres(log):
    """The indexes' expressions match the SQL Django writes for each side of the search."""
    assert missing_search_indexes(connection) == []
    address_side = Recipient.objects.filter(address__icontains="example.n")
    subject_side = Message.objects.filter(subject__icontains="password")
    for queryset, index in [
        (address_side, "maillog_rcpt_address_trgm"),
        (subject_side, "maillog_msg_subject_trgm"),
    ]:
        plan = usable_plan(*queryset.query.sql_with_params())  # tiny tables: force the choice
        assert index in plan, plan


def test_a_missing_trigram_index_is_a_warning_on_postgres(log):
    def w006() -> list:
        return [m for m in run_checks(databases=["default"]) if m.id == "wagtail_maillog.W006"]

    assert w006() == []
    if connection.vendor != "postgresql":
        return  # nothing to miss elsewhere: the migration adds no index there
    with connection.cursor() as cursor:
        cursor.execute('DROP INDEX "maillog_rcpt_address_trgm"')  # rolled back with the test
    warnings = w006()
    assert len(warnings) == 1 and "maillog_rcpt_address_trgm" in warnings[0].msg
