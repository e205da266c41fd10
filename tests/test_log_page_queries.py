"""The SQL statements of the mail log's first page and its status filter (issue 20).

The page reads the mail log in two statements whoever looks at it: the filter
choices (source, ESP and related type in one), and the page's rows, which carry
the capped count of all matching rows and the Mail menu's outbox badge. The rest
of the page is Wagtail's and Django's own (session, user, profile, locales, the
page explorer) and, for a user without ``view_all_mail``, the permission lookups
and their team's ids.
"""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import Group, User
from django.contrib.contenttypes.models import ContentType
from django.core.mail import EmailMessage
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils.html import escape

from tests.testapp.models import Invoice
from tests.utils import client_for, make_user, send_with_ids
from wagtail_maillog import label
from wagtail_maillog.log import views
from wagtail_maillog.models import Message, Recipient
from wagtail_maillog.status import Status

pytestmark = pytest.mark.django_db

LOG = "/admin/maillog/"
PAGES = [LOG, LOG + "?status=bounced"]
#: The issue's target for a page of the log (post_office's changelist takes 7).
MOST_STATEMENTS = 8
XSS = "<script>alert(1)</script>"


@pytest.fixture
def people():
    team = Group.objects.create(name="Support")
    return {
        "admin": User.objects.create_superuser("admin", "admin@example.com", "pw"),
        "viewer": make_user("viewer", "view_message", groups=(team,)),
        "teammate": make_user("teammate", groups=(team,)),
        "outsider": make_user("outsider", "view_message"),
    }


def _sent(subject: str, user: User | None, to: str, status: str = "", **labels) -> None:
    msg = EmailMessage(subject, "Body", "site@example.com", [to])
    label(msg, user=user, **labels)
    msg.send()
    if status:
        Recipient.objects.filter(message_id=msg._maillog_pk).update(status=status)


@pytest.fixture
def log(people, settings):
    """Sent mail of the team, of an outsider and of the system (some bounced, some
    about an invoice), and mail waiting in the outbox: two of the team's, one other."""
    invoice = Invoice.objects.create(number="20")
    _sent(
        "Team invoice",
        people["teammate"],
        "ann@example.com",
        Status.BOUNCED,
        related=invoice,
        source="invoice",
    )
    _sent("Team news", people["teammate"], "bob@example.com", source="newsletter")
    _sent(
        "Outside bounce", people["outsider"], "carol@example.com", Status.BOUNCED, source="welcome"
    )
    send_with_ids(["dave@example.com"], "pm-1", subject="System notice")
    settings.EMAIL_BACKEND = "wagtail_maillog.outbox.backend.OutboxBackend"
    settings.WAGTAIL_MAILLOG = {
        **settings.WAGTAIL_MAILLOG,
        "CONNECTORS": {"default": {"BACKEND": "tests.esp.ScriptedBackend"}},
    }
    _sent("Team waiting 1", people["viewer"], "erin@example.com")
    _sent("Team waiting 2", people["teammate"], "fay@example.com")
    _sent("Other waiting", people["outsider"], "gus@example.com")
    return invoice


def _page(user: User, url: str) -> tuple[str, list[str], list[str]]:
    """The page (after a first request that warms Django's caches), all its statements,
    and those that read the mail log's own tables."""
    client = client_for(user)
    client.get(url)
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200
    statements = [q["sql"] for q in queries.captured_queries]
    ours = [sql for sql in statements if "wagtail_maillog_" in sql]
    return response.content.decode(), statements, ours


def _subjects(page: str) -> set[str]:
    return set(re.findall(r'id="recipient_\d+_title">([^<]*)</a>', page))


def _badge(page: str) -> str:
    """The outbox count of the Mail menu (in the sidebar's JSON)."""
    counts = set(re.findall(r'data-maillog-outbox-count": "(\d+)"', page))
    assert len(counts) == 1, counts  # "Mail" and its "Outbox" agree
    return counts.pop()


@pytest.mark.parametrize("url", PAGES)
def test_a_superuser_reads_the_log_in_two_statements(people, log, url):
    page, statements, ours = _page(people["admin"], url)
    assert len(ours) == 2, ours
    choices, rows = ours
    assert "wagtail_maillog_recipient" not in choices  # the filter choices, from the messages
    # The rows carry the capped count and the outbox badge: no COUNT of their own.
    assert "wagtail_maillog_recipient" in rows and "wagtail_maillog_outboxitem" in rows
    assert len(statements) <= MOST_STATEMENTS, statements
    bounced = {"Team invoice", "Outside bounce"}
    if "status" in url:
        assert _subjects(page) == bounced
    else:
        assert bounced | {"Team news", "System notice", "Other waiting"} <= _subjects(page)
    assert _badge(page) == "3"
    assert "Mail (3)" in page and "Outbox (3)" in page
    # The filter drawer offers what occurs in the log, read in that one statement.
    for value in ("invoice", "newsletter", "welcome"):
        assert f'value="{value}"' in page
    invoice_type = ContentType.objects.get_for_model(log)
    assert f'<option value="{invoice_type.pk}">Invoice</option>' in page  # the model's name


@pytest.mark.parametrize("url", PAGES)
def test_a_team_member_reads_their_teams_log_in_as_few(people, log, url):
    page, statements, ours = _page(people["viewer"], url)
    assert len(ours) == 2, ours
    # Beyond the superuser's page: Django's permission lookups, their team's ids (for
    # the outbox badge), Wagtail's page and collection permissions.
    assert len(statements) <= MOST_STATEMENTS + 3, statements
    if "status" in url:
        assert _subjects(page) == {"Team invoice"}
    else:
        assert _subjects(page) == {"Team invoice", "Team news", "Team waiting 1", "Team waiting 2"}
    assert _badge(page) == "2"  # their team's two mails in the outbox, not the other
    assert 'value="invoice"' in page and 'value="welcome"' not in page


def test_the_count_and_the_badge_without_rows_to_carry_them(people, log, monkeypatch):
    """A page past the last, or a filter that matches nothing: counted on their own."""
    monkeypatch.setattr(views.MailLogIndexView, "paginate_by", 2)
    admin = client_for(people["admin"])
    past = admin.get(LOG + "?p=99")
    assert past.context["page_obj"].number == 4  # 7 rows, 2 a page: the last page
    assert past.context["paginator"].count == 7 and len(past.context["table"].rows) == 1
    nothing = admin.get(LOG + "?status=complained").content.decode()
    assert _badge(nothing) == "3" and "No mails match your query" in nothing


def _normalized(html: str) -> str:
    tbody = re.search(r"<tbody>(.*)</tbody>", html, re.S).group(1)
    return re.sub(r"\s+", " ", re.sub(r">\s+<", "><", tbody)).replace("<td >", "<td>").strip()


def test_rows_rendered_in_one_pass_are_the_templates_rows(people, log):
    """The rows the table renders itself (PrerenderedRows) are, to the byte but for
    whitespace, those of the listing template's loop over django-tables2's cells."""
    message = Message.objects.get(subject="Team news")
    Message.objects.filter(pk=message.pk).update(subject="", body_stored=True)
    Message.objects.filter(subject="Team invoice").update(related_label="")
    Recipient.objects.filter(message__subject="Outside bounce").update(reason=XSS)
    Message.objects.filter(subject="System notice").update(source="r&d")
    admin = client_for(people["admin"])
    response = admin.get(LOG)
    table = response.context["table"]
    fast = table.as_html(response.wsgi_request)
    table.prerenders_rows = False
    slow = table.as_html(response.wsgi_request)
    assert _normalized(fast) == _normalized(slow)
    rows = _normalized(fast)
    assert rows.count("<tr ") == 7 and XSS not in rows and escape(XSS) in rows
    assert "<td>R&amp;d</td>" in rows  # a plain value, escaped as the template does
    # A mail without a subject still links to its page; an object without a label
    # shows its id (django-tables2's "—" for an empty value skipped both).
    assert f'<a href="/admin/maillog/{message.pk}/" id="recipient_' in rows
    assert "(no subject)" in rows and f'">{log.pk}</a><div class="maillog-muted">' in rows
