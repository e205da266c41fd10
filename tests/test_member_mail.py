"""``RelatedMailPanel`` on real admin edit views: a page, a snippet, a member.

For a registered member model the panel lists the mail sent *to* the member's
address as well as the mail labelled with the member. The member's edit view
here is a Wagtail ``ModelViewSet`` mounted by this module's own URLconf, so the
rest of the suite keeps ``Member`` without an admin edit view.
"""

from __future__ import annotations

import re
from datetime import timedelta
from html import unescape
from typing import Any

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.contrib.contenttypes.models import ContentType
from django.core.mail import EmailMessage
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import include, path, reverse
from django.utils import timezone
from wagtail.admin.panels import FieldPanel
from wagtail.admin.viewsets.model import ModelViewSet
from wagtail.models import GroupPagePermission, Page

from tests.testapp.models import LetterPage, Member, Ticket
from tests.urls import urlpatterns as site_urls
from tests.utils import client_for, make_user
from wagtail_maillog import label
from wagtail_maillog.log.panels import RelatedMailPanel
from wagtail_maillog.models import Message, Recipient
from wagtail_maillog.templatetags.maillog_tags import related_mail_context

pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]

LIMIT = 3


class MemberViewSet(ModelViewSet):
    """The edit view a site gives its member model (here only in this module's URLs)."""

    model = Member
    name = "test_members"
    panels = [FieldPanel("name"), FieldPanel("email"), RelatedMailPanel(limit=LIMIT)]


member_views = MemberViewSet()
urlpatterns = [
    path(
        "admin/test-members/",
        include(
            (member_views.get_urlpatterns(), member_views.url_namespace),
            namespace=member_views.url_namespace,
        ),
    ),
    *site_urls,
]


def send(
    subject: str,
    to: str,
    related: Any = None,
    team: Group | None = None,
    minutes_ago: int = 0,
) -> Message:
    msg = EmailMessage(subject, "Body", "site@example.com", [to])
    label(msg, related=related, team=team)
    msg.send()
    if minutes_ago:  # mail of different moments, as on a live site
        at = timezone.now() - timedelta(minutes=minutes_ago)
        Message.objects.filter(pk=msg._maillog_pk).update(created_at=at)
        Recipient.objects.filter(message_id=msg._maillog_pk).update(created_at=at)
    return Message.objects.get(pk=msg._maillog_pk)


@pytest.fixture
def teams() -> dict[str, Group]:
    return {name: Group.objects.create(name=name) for name in ("Support", "Sales")}


@pytest.fixture
def people(teams: dict[str, Group]) -> dict[str, User]:
    """Everyone may edit pages, tickets and members; they differ in the mail they may see."""
    page_editors = Group.objects.create(name="Page editors")
    GroupPagePermission.objects.create(
        group=page_editors,
        page=Page.objects.get(depth=1),
        permission=Permission.objects.get(
            content_type__app_label="wagtailcore", codename="change_page"
        ),
    )
    people = {
        "editor": make_user("editor", groups=(page_editors,)),
        "support": make_user("support", "view_message", groups=(teams["Support"], page_editors)),
        "auditor": make_user("auditor", "view_all_mail", groups=(page_editors,)),
    }
    edit = Permission.objects.filter(
        content_type__app_label="testapp", codename__in=["change_ticket", "change_member"]
    )
    for user in people.values():
        user.user_permissions.add(*edit)
    people["admin"] = User.objects.create_superuser("admin", "admin@example.com", "pw")
    return people


def edit_view(user: User, url: str) -> str:
    response = client_for(user).get(url)
    assert response.status_code == 200, response
    return response.content.decode()


def panel(html: str) -> str:
    """The panel's own markup (empty when the panel is not on the page)."""
    found = re.search(r'<div class="maillog-related">.*?\n</div>', html, re.S)  # its own end
    return found.group(0) if found else ""


def subjects(html: str) -> list[str]:
    """The subjects of the panel's rows, in their order."""
    return [unescape(s) for s in re.findall(r"/admin/maillog/\d+/\">([^<]*)</a>", panel(html))]


def member_url(member: Member) -> str:
    return reverse(f"{member_views.url_namespace}:edit", args=[member.pk])


# ---- a page and a snippet ----------------------------------------------------


@pytest.fixture
def letter() -> LetterPage:
    root = Page.objects.get(depth=1)
    return root.add_child(instance=LetterPage(title="Autumn letter", slug="autumn-letter"))


def page_url(page: Page) -> str:
    return reverse("wagtailadmin_pages:edit", args=[page.pk])


def ticket_url(ticket: Ticket) -> str:
    return reverse("wagtailsnippets_testapp_ticket:edit", args=[ticket.pk])


def test_a_page_edit_view_lists_the_mail_about_the_page(people, letter):
    send("Letter, first", "ann@example.com", related=letter, minutes_ago=5)
    send("Letter, second", "bob@example.com", related=letter)
    send("Unrelated", "ann@example.com")
    html = edit_view(people["admin"], page_url(letter))
    assert subjects(html) == ["Letter, second", "Letter, first"]  # newest first
    rows = panel(html)
    assert rows.count('data-status="sent"') == 2
    assert "w-human-readable-date" in rows  # Wagtail's date: relative, exact on hover
    assert f"related_id={letter.pk}" in rows and "Open in the mail log" in rows


def test_a_snippet_edit_view_lists_the_mail_about_the_snippet(people):
    ticket = Ticket.objects.create(subject="Broken lamp")
    send("About your ticket", "ann@example.com", related=ticket)
    send("Another ticket", "ann@example.com", related=Ticket.objects.create(subject="Other"))
    html = edit_view(people["admin"], ticket_url(ticket))
    assert subjects(html) == ["About your ticket"]
    assert 'id="panel-mail-heading"' in html  # the heading "Mail": not a member


def test_more_than_the_limit_shows_the_newest_and_the_link_to_all(people, letter):
    for minutes in range(12):
        send(f"Letter {minutes}", "ann@example.com", related=letter, minutes_ago=minutes + 1)
    html = edit_view(people["admin"], page_url(letter))
    assert subjects(html) == [f"Letter {minutes}" for minutes in range(10)]  # default limit
    assert "All mail about this in the mail log" in panel(html)
    assert "Open in the mail log" not in panel(html)


def test_page_and_snippet_show_only_the_mail_the_user_may_see(people, teams, letter):
    ticket = Ticket.objects.create(subject="Broken lamp")
    for obj in (letter, ticket):
        send("Support's mail", "ann@example.com", related=obj, team=teams["Support"])
        send("Sales' mail", "ann@example.com", related=obj, team=teams["Sales"])
        send("System mail", "ann@example.com", related=obj)
    for url in (page_url(letter), ticket_url(ticket)):
        assert subjects(edit_view(people["support"], url)) == ["Support's mail"]
        assert sorted(subjects(edit_view(people["auditor"], url))) == [
            "Sales' mail",
            "Support's mail",
            "System mail",
        ]
        html = edit_view(people["editor"], url)  # may edit, may not open the mail log
        assert panel(html) == "" and "Support&#x27;s mail" not in html
        assert 'id="panel-mail-heading"' not in html  # no empty panel either


# ---- a member ----------------------------------------------------------------


@pytest.fixture
def ann() -> Member:
    return Member.objects.create(name="Ann", email=" Ann@Example.com ")


def test_a_members_edit_view_lists_mail_to_the_address_and_about_the_member(people, ann):
    send("Newsletter", "ANN@example.com", minutes_ago=30)  # no label: a mailing, say
    send("Note about Ann", "office@example.com", related=ann, minutes_ago=20)
    send("Welcome", "ann@example.com", related=ann, minutes_ago=10)  # both: listed once
    send("To someone else", "bob@example.com", minutes_ago=5)
    send("About someone else", "ann@example.com.au", related=Member.objects.create(name="B"))
    html = edit_view(people["admin"], member_url(ann))
    assert subjects(html) == ["Welcome", "Note about Ann", "Newsletter"]
    assert "Mail to and about this member" in html
    rows = panel(html)
    assert "office@example.com" in rows  # mail about the member goes elsewhere too
    assert "/admin/maillog/?q=ann%40example.com" in rows  # the log searched for the address
    assert f"related_id={ann.pk}" in rows  # and the mail about the member


def test_mail_to_the_members_address_shows_without_any_label(people, ann):
    send("Newsletter", "ann@example.com")
    html = edit_view(people["admin"], member_url(ann))
    assert subjects(html) == ["Newsletter"]
    assert "All mail to this address in the mail log" in panel(html)
    assert "related_id=" not in panel(html)  # nothing is about the member


def test_a_member_without_mail(people, ann):
    html = panel(edit_view(people["admin"], member_url(ann)))
    assert "No mail to this member or about them" in html


def test_a_members_newest_mail_from_both_sources_up_to_the_limit(people, ann):
    """The newest LIMIT of the union, interleaved: neither source crowds out the other."""
    for minutes in (1, 3, 5, 7):
        send(f"To Ann {minutes}", "ann@example.com", minutes_ago=minutes)
        send(f"About Ann {minutes + 1}", "office@example.com", related=ann, minutes_ago=minutes + 1)
    html = edit_view(people["admin"], member_url(ann))
    assert subjects(html) == ["To Ann 1", "About Ann 2", "To Ann 3"]


def test_a_members_mail_takes_two_index_queries(people, ann):
    """One by the related object, one by the address: no ``OR`` across the two."""
    send("Newsletter", "ann@example.com", related=ann)
    auditor = people["auditor"]
    auditor.has_perm("wagtail_maillog.view_all_mail")  # permissions and content types:
    ContentType.objects.get_for_model(Member)  # cached already on any edit view
    with CaptureQueriesContext(connection) as queries:
        context = related_mail_context(ann, auditor, LIMIT)
    assert [r.message.subject for r in context["recipients"]] == ["Newsletter"]
    assert len(queries) == 2
    where = [q["sql"].split(" WHERE ", 1)[1] for q in queries]
    by_address = [w for w in where if "ann@example.com" in w]
    assert len(by_address) == 1
    assert "object_id" not in by_address[0] and " OR " not in by_address[0]


def test_a_member_shows_only_the_mail_the_user_may_see(people, teams, ann):
    send("Support to Ann", "ann@example.com", team=teams["Support"])
    send("Sales to Ann", "ann@example.com", team=teams["Sales"])
    send("Support about Ann", "office@example.com", related=ann, team=teams["Support"])
    send("Sales about Ann", "office@example.com", related=ann, team=teams["Sales"])
    url = member_url(ann)
    assert sorted(subjects(edit_view(people["support"], url))) == [
        "Support about Ann",
        "Support to Ann",
    ]
    assert len(subjects(edit_view(people["auditor"], url))) == LIMIT
    html = edit_view(people["editor"], url)
    assert panel(html) == "" and "to Ann" not in html
    assert "Mail to and about this member" not in html


def test_the_tag_lists_a_members_mail_too(people, ann):
    from django.template import Context, Template
    from django.test import RequestFactory

    send("Newsletter", "ann@example.com")
    request = RequestFactory().get("/")
    request.user = people["admin"]
    html = Template("{% load maillog_tags %}{% related_mails obj %}").render(
        Context({"obj": ann, "request": request})
    )
    assert subjects(html) == ["Newsletter"]
