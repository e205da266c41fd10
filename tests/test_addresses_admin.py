"""The Addresses pages, bulk actions and panels in the Wagtail admin."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import AnonymousUser, User
from django.core import mail
from django.db import connection
from django.template import Context
from django.test import Client, RequestFactory
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from wagtail import hooks
from wagtail.admin.panels import FieldPanel, ObjectList

from tests.testapp.models import Member
from tests.utils import client_for, denied, post_json, send_with_ids
from tests.utils import make_user as _make_user
from wagtail_maillog.addresses.health import set_status
from wagtail_maillog.addresses.panels import AddressesDashboardPanel, AddressStatusPanel
from wagtail_maillog.addresses.views import members_by_address
from wagtail_maillog.models import Address, AddressChange, AddressStatus
from wagtail_maillog.status import Status

pytestmark = pytest.mark.django_db

XSS = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
ADDRESSES = "/admin/maillog/addresses/"
BULK = "/admin/bulk/wagtail_maillog/address/"
POSTMARK = "/anymail/postmark/tracking/"
CONFIRM_SUBJECT = "Please confirm your email address"


def add(address: str, status: str = AddressStatus.UNCONFIRMED, **fields) -> Address:
    return Address.objects.create(address=address, status=status, **fields)


def listed(response) -> list[str]:
    """The addresses in the listing, in order."""
    return re.findall(r'id="address_\d+_title">([^<]+)</a>', response.content.decode())


def confirmation_requests() -> list:
    return [m for m in mail.outbox if m.subject == CONFIRM_SUBJECT]


@pytest.fixture
def people():
    return {
        "editor": make_user("editor"),
        "logviewer": make_user("logviewer", "view_all_mail"),
        "manager": make_user("manager", "manage_addresses"),
        "manager_with_log": make_user("manager2", "manage_addresses", "view_all_mail"),
        "admin": User.objects.create_superuser("admin", "admin@staff.example", "pw"),
    }


@pytest.fixture
def commit(django_capture_on_commit_callbacks):
    """Run on-commit hooks (address updates follow the committed event batch)."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


# ---- permissions ---------------------------------------------------------------


def test_menu_item_only_for_users_who_may_manage_addresses(people):
    for name in ("manager", "admin"):
        assert ADDRESSES in client_for(people[name]).get("/admin/").content.decode(), name
    for name in ("editor", "logviewer"):
        assert ADDRESSES not in client_for(people[name]).get("/admin/").content.decode(), name


@pytest.mark.parametrize(
    "url",
    [
        ADDRESSES,
        ADDRESSES + "results/",
        ADDRESSES + "{pk}/",
        ADDRESSES + "{pk}/clear/",
        ADDRESSES + "send/?address=ann@example.com",
        ADDRESSES + "resend/",
        BULK + "send_confirmation/?id={pk}",
        BULK + "clear_problem/?id={pk}",
    ],
)
def test_pages_are_forbidden_without_manage_addresses(people, url):
    address = add("ann@example.com", AddressStatus.BOUNCED)
    for name in ("editor", "logviewer"):
        response = client_for(people[name]).get(url.format(pk=address.pk))
        assert denied(response), (name, response.status_code)


def test_the_default_sort_is_marked_and_dates_read_as_wagtails(people):
    add("ann@example.com")
    page = client_for(people["admin"]).get(ADDRESSES).content.decode()
    since = re.search(r'<th[^>]*data-column="status_at"[^>]*>.*?</th>', page, re.S).group(0)
    assert 'aria-sort="descending"' in since and "teal" in since
    row = re.search(r"<tr[^>]*data-address=.*?</tr>", page, re.S).group(0)
    assert 'class="w-human-readable-date"' in row and "Just now" in row


def test_actions_change_nothing_without_manage_addresses(people):
    bounced = add("b@example.com", AddressStatus.BOUNCED)
    fresh = add("f@example.com")
    Address.objects.filter(pk=fresh.pk).update(
        status=AddressStatus.REQUESTED, requested_at=timezone.now() - timedelta(days=30)
    )
    client = client_for(people["logviewer"])
    posts = [
        (f"{ADDRESSES}{bounced.pk}/clear/", {}),
        (f"{ADDRESSES}send/", {"address": "f@example.com"}),
        (f"{ADDRESSES}resend/", {"days": "1"}),
        (f"{BULK}send_confirmation/?id={fresh.pk}", {}),
        (f"{BULK}clear_problem/?id={bounced.pk}", {}),
    ]
    for url, data in posts:
        assert denied(client.post(url, data)), url
    assert mail.outbox == []
    assert not AddressChange.objects.exists()
    assert Address.objects.get(pk=bounced.pk).status == AddressStatus.BOUNCED


def test_the_permission_can_be_given_to_a_wagtail_group(people):
    html = client_for(people["admin"]).get("/admin/groups/new/").content.decode()
    assert "Can manage member addresses" in html


def test_anonymous_users_are_sent_to_the_login_page():
    response = Client().get(ADDRESSES)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


# ---- the list ------------------------------------------------------------------


@pytest.fixture
def addresses():
    now = timezone.now()
    rows = {
        "ann@example.com": (AddressStatus.CONFIRMED, 5),
        "bob@example.com": (AddressStatus.BOUNCED, 1),
        "cat@example.com": (AddressStatus.SPAM, 2),
        "dan@example.com": (AddressStatus.REQUESTED, 3),
        "eve@example.com": (AddressStatus.UNCONFIRMED, 4),
    }
    for address, (status, days) in rows.items():
        add(address, status, status_at=now - timedelta(days=days))
    Member.objects.create(name="Ann Member", email="Ann@Example.com")
    return rows


def test_list_shows_status_since_last_event_and_member(people, addresses):
    Address.objects.filter(address="bob@example.com").update(
        last_event_at=timezone.now(), reason="Bounced of a message to this address"
    )
    response = client_for(people["manager"]).get(ADDRESSES)
    assert response.status_code == 200
    html = response.content.decode()
    # newest status first
    assert listed(response) == [
        "bob@example.com",
        "cat@example.com",
        "dan@example.com",
        "eve@example.com",
        "ann@example.com",
    ]
    assert 'data-address-status="confirmed"' in html
    assert "maillog-status--positive" in html and "maillog-status--critical" in html
    assert 'title="Bounced of a message to this address"' in html  # the reason as tooltip
    assert "Ann Member" in html  # the member, found although its email differs in case
    assert "Send confirmation request" in html and "Clear problem" in html  # bulk actions
    assert "Resend unanswered requests" in html  # header button


def test_filter_by_several_statuses_search_and_problem(people, addresses):
    client = client_for(people["manager"])
    both = client.get(f"{ADDRESSES}?status=bounced&status=spam")
    assert sorted(listed(both)) == ["bob@example.com", "cat@example.com"]
    problems = client.get(f"{ADDRESSES}?problem=true")
    assert sorted(listed(problems)) == ["bob@example.com", "cat@example.com"]
    healthy = client.get(f"{ADDRESSES}?problem=false")
    assert len(listed(healthy)) == 3
    # the dashboard's link: the chip says "Yes" (not "True"), "No" for false
    for response, word in ((problems, "Yes"), (healthy, "No")):
        (chip,) = response.context["view"].active_filters
        assert (chip.field_label, chip.value) == ("Has a problem", word)
    found = client.get(f"{ADDRESSES}?q=DAN@")
    assert listed(found) == ["dan@example.com"]
    results = client.get(f"{ADDRESSES}results/?q=eve&status=unconfirmed")
    assert listed(results) == ["eve@example.com"]


@pytest.mark.parametrize(
    "ordering, first",
    [
        ("address", "ann@example.com"),
        ("-address", "eve@example.com"),
        ("status", "eve@example.com"),  # unconfirmed, requested, confirmed, problems
        ("-status", "cat@example.com"),
        ("status_at", "ann@example.com"),
        ("-status_at", "bob@example.com"),
    ],
)
def test_sort(people, addresses, ordering, first):
    response = client_for(people["manager"]).get(f"{ADDRESSES}?ordering={ordering}")
    assert listed(response)[0] == first


def test_addresses_and_causes_are_escaped(people):
    evil = add(f"{XSS}@example.com", AddressStatus.BOUNCED, reason=XSS)
    set_status([(evil.address, AddressStatus.SPAM, f"cause {XSS}")], user=people["admin"])
    client = client_for(people["admin"])
    for url in (
        ADDRESSES,
        f"{ADDRESSES}{evil.pk}/",
        "/admin/",
        f"{BULK}clear_problem/?id={evil.pk}",
    ):
        html = client.get(url).content.decode()
        assert XSS not in html, url
        assert ESCAPED in html, url


def test_list_query_count_does_not_grow_with_rows(people):
    admin = client_for(people["admin"])
    admin.get(ADDRESSES)  # warm caches (content types, permissions, site)
    counts = []
    for size, prefix in ((3, "a"), (40, "b")):
        for i in range(size):
            Member.objects.create(name=f"M {prefix}{i}", email=f"{prefix}{i}@example.com")
        with CaptureQueriesContext(connection) as queries:
            response = admin.get(ADDRESSES)
        assert response.status_code == 200
        assert f"M {prefix}0" in response.content.decode()  # members are shown
        counts.append(len(queries))
    assert counts[0] == counts[1], counts


def test_members_are_looked_up_in_one_query_per_model():
    Member.objects.create(name="Lo", email=" Lo@Example.com")
    Member.objects.create(name="Lo again", email="lo@example.com")
    with CaptureQueriesContext(connection) as queries:
        found = members_by_address(["lo@example.com", "nobody@example.com"])
    assert len(queries) == 1
    assert {a: m.name for a, m in found.items()} == {"lo@example.com": "Lo"}


# ---- one address ---------------------------------------------------------------


def test_detail_shows_history_member_and_recent_mail(people, client, webhook_auth, commit):
    member = Member.objects.create(name="Heidi", email="heidi@example.com")
    message = send_with_ids(["heidi@example.com"], "pm-h", subject="Event registration")
    bounce = {
        "RecordType": "Bounce",
        "ID": 7,
        "Type": "HardBounce",
        "MessageID": "pm-h",
        "Email": "heidi@example.com",
        "BouncedAt": "2026-11-05T16:33:54Z",
        "Details": "smtp;550 5.1.1 unknown user",
    }
    with commit():
        assert post_json(client, POSTMARK, bounce, webhook_auth).status_code == 200
    address = Address.objects.get(address="heidi@example.com")
    assert address.status == AddressStatus.BOUNCED

    html = client_for(people["manager_with_log"]).get(f"{ADDRESSES}{address.pk}/").content.decode()
    assert "Problem (bounced)" in html
    assert "A message to this address bounced." in html  # the cause
    assert "Bounced of a message" not in html
    assert f'href="/admin/maillog/{message.pk}/"' in html  # the message of the change
    assert member.name in html
    assert "Event registration" in html and 'data-status="bounced"' in html  # recent mail
    assert "Clear problem" in html
    assert f"{ADDRESSES}send/" not in html  # no request to a problem address

    # a log permission that does not cover this (system) mail: no link to it
    own_only = make_user("ownonly", "manage_addresses", "view_message")
    html = client_for(own_only).get(f"{ADDRESSES}{address.pk}/").content.decode()
    assert "A message to this address bounced." in html
    assert f'href="/admin/maillog/{message.pk}/"' not in html
    assert "Event registration" not in html

    # without a log permission: the history without links, no mail
    html = client_for(people["manager"]).get(f"{ADDRESSES}{address.pk}/").content.decode()
    assert "A message to this address bounced." in html
    assert f'href="/admin/maillog/{message.pk}/"' not in html
    assert "Event registration" not in html and "You may not view the mail log" in html


def test_detail_of_a_missing_address_is_404(people):
    assert client_for(people["manager"]).get(f"{ADDRESSES}999/").status_code == 404


def test_send_one_request_including_to_an_address_without_a_row(people):
    client = client_for(people["manager"])
    url = f"{ADDRESSES}send/?address=New@Example.com&next=/admin/somewhere/"
    page = client.get(url)
    assert page.status_code == 200 and "new@example.com" in page.content.decode()
    assert not Address.objects.exists()  # asking changes nothing
    response = client.post(url, {"address": "New@Example.com"})
    assert response.status_code == 302 and response["Location"] == "/admin/somewhere/"
    assert [m.to for m in confirmation_requests()] == [["new@example.com"]]
    row = Address.objects.get(address="new@example.com")
    assert row.status == AddressStatus.REQUESTED
    assert row.changes.get().user == people["manager"]


def test_send_one_request_refused_for_problem_or_confirmed(people):
    add("gone@example.com", AddressStatus.BOUNCED)
    add("ok@example.com", AddressStatus.CONFIRMED)
    client = client_for(people["manager"])
    for address in ("gone@example.com", "ok@example.com"):
        page = client.get(f"{ADDRESSES}send/?address={address}").content.decode()
        assert "Yes, send" not in page
        client.post(f"{ADDRESSES}send/", {"address": address})
    assert mail.outbox == []
    assert client.get(f"{ADDRESSES}send/?address=not-an-address").status_code == 404


def test_clear_one_problem(people):
    row = add("fixed@example.com", AddressStatus.INVALID, reason="Invalid")
    client = client_for(people["manager"])
    assert "Yes, clear the problem" in client.get(f"{ADDRESSES}{row.pk}/clear/").content.decode()
    response = client.post(f"{ADDRESSES}{row.pk}/clear/")
    assert response.status_code == 302 and response["Location"] == f"{ADDRESSES}{row.pk}/"
    row.refresh_from_db()
    assert row.status == AddressStatus.UNCONFIRMED
    change = row.changes.get()
    assert (change.old, change.new, change.user) == ("invalid", "unconfirmed", people["manager"])


# ---- bulk actions --------------------------------------------------------------


def test_bulk_send_confirmation_request(people):
    fresh = add("fresh@example.com")
    waiting = add("waiting@example.com", AddressStatus.REQUESTED)
    confirmed = add("done@example.com", AddressStatus.CONFIRMED)
    bounced = add("gone@example.com", AddressStatus.BOUNCED)
    ids = "&".join(f"id={a.pk}" for a in (fresh, waiting, confirmed, bounced))
    url = f"{BULK}send_confirmation/?{ids}&next={ADDRESSES}"
    client = client_for(people["manager"])

    page = client.get(url).content.decode()
    assert "Email a confirmation link to these addresses?" in page
    assert page.index("fresh@example.com") < page.index("These are left alone")
    assert page.index("These are left alone") < page.index("gone@example.com")
    assert mail.outbox == []

    response = client.post(url)
    assert response.status_code == 302 and response["Location"] == ADDRESSES
    sent = confirmation_requests()
    assert sorted(m.to[0] for m in sent) == ["fresh@example.com", "waiting@example.com"]
    assert all(re.search(r"http://testserver/mail/confirm/\S+/", m.body) for m in sent)
    statuses = dict(Address.objects.values_list("address", "status"))
    assert statuses == {
        "fresh@example.com": "requested",
        "waiting@example.com": "requested",
        "done@example.com": "confirmed",
        "gone@example.com": "bounced",
    }
    assert AddressChange.objects.get(address=fresh).user == people["manager"]
    messages = [str(m).strip() for m in response.wsgi_request._messages]
    assert "2 confirmation requests were sent." in messages


def test_bulk_clear_problem_keeps_the_history(people):
    bounced = add("b@example.com")
    set_status([("b@example.com", AddressStatus.BOUNCED, "Bounced of a message")])
    spam = add("s@example.com", AddressStatus.SPAM)
    fine = add("f@example.com", AddressStatus.CONFIRMED)
    ids = "&".join(f"id={a.pk}" for a in (bounced, spam, fine))
    client = client_for(people["admin"])
    page = client.get(f"{BULK}clear_problem/?{ids}").content.decode()
    assert "These have no problem to clear" in page

    assert client.post(f"{BULK}clear_problem/?{ids}&next={ADDRESSES}").status_code == 302
    bounced.refresh_from_db()
    assert bounced.status == AddressStatus.UNCONFIRMED
    history = [(c.old, c.new, c.user_id) for c in bounced.changes.all()]
    assert history == [
        ("unconfirmed", "bounced", None),
        ("bounced", "unconfirmed", people["admin"].pk),
    ]
    assert Address.objects.get(pk=spam.pk).status == AddressStatus.UNCONFIRMED
    assert Address.objects.get(pk=fine.pk).status == AddressStatus.CONFIRMED
    assert "Problem cleared by admin" in bounced.changes.last().cause


def test_bulk_select_all_follows_the_listings_filters_and_search(people):
    for address in ("ann1@example.com", "ann2@example.com", "bob1@example.com"):
        add(address)
    add("ann3@example.com", AddressStatus.CONFIRMED)
    client = client_for(people["manager"])
    url = f"{BULK}send_confirmation/?id=all&q=ann&status=unconfirmed&next={ADDRESSES}"
    client.post(url)
    assert sorted(m.to[0] for m in confirmation_requests()) == [
        "ann1@example.com",
        "ann2@example.com",
    ]


# ---- resend to those who did not react -----------------------------------------


def test_resend_to_those_who_did_not_react_for_n_days(people):
    now = timezone.now()
    old = add("old@example.com", AddressStatus.REQUESTED, requested_at=now - timedelta(days=10))
    add("recent@example.com", AddressStatus.REQUESTED, requested_at=now - timedelta(days=2))
    client = client_for(people["manager"])
    page = client.get(f"{ADDRESSES}resend/").content.decode()
    assert "2 addresses are waiting for confirmation." in page
    # a time such as "10 a.m." ends with a full stop of its own: no sentence ends on it
    assert "Oldest request sent:" in page and ".." not in page.split("Oldest request sent:")[1][:60]
    assert client.post(f"{ADDRESSES}resend/", {"days": "0"}).status_code == 200  # invalid
    assert mail.outbox == []

    response = client.post(f"{ADDRESSES}resend/", {"days": "7"})
    assert response.status_code == 302 and response["Location"] == ADDRESSES
    assert [m.to for m in confirmation_requests()] == [["old@example.com"]]
    old.refresh_from_db()
    assert old.requested_at > now


# ---- the member's panel --------------------------------------------------------


def request_for(user, path: str = "/admin/members/1/edit/"):
    request = RequestFactory().get(path)
    request.user = user
    return request


def render_panel(member: Member, user) -> tuple[bool, str]:
    panel = AddressStatusPanel().bind_to_model(Member)
    bound = panel.get_bound_panel(instance=member, request=request_for(user), form=None)
    return bound.is_shown(), bound.render_html() if bound.is_shown() else ""


def test_panel_on_a_members_edit_view(people):
    member = Member.objects.create(name="Mia", email="mia@example.com")
    shown, html = render_panel(member, people["manager"])
    assert shown
    assert "mia@example.com" in html and 'data-address-status="unconfirmed"' in html
    assert "Send confirmation request" in html and "View in Addresses" in html
    row = Address.objects.get(address="mia@example.com")
    assert f'href="{ADDRESSES}{row.pk}/"' in html
    assert "next=%2Fadmin%2Fmembers%2F1%2Fedit%2F" in html  # back to the edit view

    set_status([("mia@example.com", AddressStatus.BOUNCED, f"Bounced {XSS}")])
    shown, html = render_panel(member, people["manager"])
    assert 'data-address-status="bounced"' in html and f"Bounced {ESCAPED}" in html
    assert "Clear problem" in html and "Send confirmation request" not in html

    # people who may not manage addresses see the status, without the buttons
    shown, html = render_panel(member, people["editor"])
    assert shown and 'data-address-status="bounced"' in html
    assert "Clear problem" not in html and "View in Addresses" not in html


def test_panel_inside_a_whole_edit_form(people):
    member = Member.objects.create(name="Mo", email="mo@example.com")
    edit_handler = ObjectList(
        [FieldPanel("name"), FieldPanel("email"), AddressStatusPanel()]
    ).bind_to_model(Member)
    form = edit_handler.get_form_class()(instance=member)
    bound = edit_handler.get_bound_panel(
        instance=member, request=request_for(people["manager"]), form=form
    )
    html = bound.render_html()
    assert "Email address status" in html  # the heading
    assert 'data-address-status="unconfirmed"' in html and "<form" not in html


def test_panel_without_a_row_an_address_or_a_saved_member(people):
    Member.objects.bulk_create([Member(name="Old", email="old@example.com")])  # no signals
    old = Member.objects.get(name="Old")
    shown, html = render_panel(old, people["manager"])
    assert "nothing recorded yet" in html and "address=old%40example.com" in html
    assert not Address.objects.exists()  # rendering writes nothing

    nobody = Member.objects.create(name="No mail")
    assert "This member has no email address." in render_panel(nobody, people["manager"])[1]
    assert render_panel(Member(name="New"), people["manager"]) == (False, "")


# ---- the dashboard panel -------------------------------------------------------


def test_dashboard_panel_counts_and_newest_problems(people):
    now = timezone.now()
    for i in range(3):
        add(f"c{i}@example.com", AddressStatus.CONFIRMED)
    for i in range(7):
        add(f"p{i}@example.com", AddressStatus.BOUNCED, status_at=now - timedelta(hours=i))
    add("s@example.com", AddressStatus.SPAM, status_at=now - timedelta(minutes=30))

    context = Context({"request": request_for(people["manager"])})
    with CaptureQueriesContext(connection) as queries:
        html = AddressesDashboardPanel().render_html(context)
    assert len(queries) == 2  # one GROUP BY for the counts, one for the problems
    counts = dict(
        re.findall(
            r'data-address-count="(\w+)".*?maillog-address-counts__number">(\d+)<', html, re.S
        )
    )
    assert counts == {
        "unconfirmed": "0",
        "requested": "0",
        "confirmed": "3",
        "bounced": "7",
        "spam": "1",
        "unsubscribed": "0",
        "blocked": "0",
        "invalid": "0",
    }
    problems = re.findall(r'<td class="title"><a href="[^"]+">([^<]+)</a>', html)
    assert problems == [
        "p0@example.com",
        "s@example.com",
        "p1@example.com",
        "p2@example.com",
        "p3@example.com",
    ]


def test_dashboard_panel_only_for_users_who_may_manage_addresses(people):
    add("p@example.com", AddressStatus.BOUNCED)
    assert "Member addresses" in client_for(people["manager"]).get("/admin/").content.decode()
    for name in ("editor", "logviewer"):
        assert "Member addresses" not in client_for(people[name]).get("/admin/").content.decode()
    panels: list = []
    for hook in hooks.get_hooks("construct_homepage_panels"):
        hook(request_for(AnonymousUser()), panels)
    assert not any(isinstance(p, AddressesDashboardPanel) for p in panels)


def test_recipient_status_badges_are_reused_in_recent_mail(people):
    send_with_ids(["r@example.com"], "pm-r", subject="Receipt")
    row = add("r@example.com")
    html = client_for(people["admin"]).get(f"{ADDRESSES}{row.pk}/").content.decode()
    assert f'data-status="{Status.QUEUED}"' in html or f'data-status="{Status.SENT}"' in html


def make_user(name: str, *perms: str) -> User:
    return _make_user(name, *perms, domain="staff.example")
