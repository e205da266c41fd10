"""The outbox in the Wagtail admin, as users with and without each permission."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import Group, User
from django.core.mail import EmailMessage
from django.db import connection
from django.test import Client, RequestFactory
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django.utils.formats import date_format
from wagtail import hooks

from tests.esp import ScriptedBackend
from tests.testapp.models import Invoice
from tests.utils import client_for, denied, make_user
from wagtail_maillog import label
from wagtail_maillog.models import ConnectorState, OutboxItem, OutboxPreference, Recipient
from wagtail_maillog.models import SendState as S
from wagtail_maillog.outbox.tables import OPTIONAL_COLUMNS
from wagtail_maillog.outbox.views import OutboxMenuItem, build_menu_item
from wagtail_maillog.status import Status

pytestmark = pytest.mark.django_db

XSS = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
OUTBOX = "/admin/maillog/outbox/"
BULK = "/admin/bulk/wagtail_maillog/outboxitem/"


@pytest.fixture(autouse=True)
def outbox_settings(settings):
    settings.EMAIL_BACKEND = "wagtail_maillog.outbox.backend.OutboxBackend"
    settings.WAGTAIL_MAILLOG = {
        "CONNECTORS": {
            "default": {"BACKEND": "tests.esp.ScriptedBackend"},
            "smtp": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"},
            "off": {"BACKEND": "tests.esp.ScriptedBackend", "ENABLED": False},
        },
        "RETRY_SCHEDULE": [60, 300],
        "MAX_ATTEMPTS": 3,
    }
    ScriptedBackend.script = []
    ScriptedBackend.calls = []
    return settings


def queue(
    subject: str, user: User | None = None, to: str = "ann@example.com", **labels
) -> OutboxItem:
    """Put one mail in the outbox, as application code would (it is not sent)."""
    msg = EmailMessage(subject, "Body", "site@example.com", [to])
    label(msg, user=user, **labels)
    msg.send()
    return OutboxItem.objects.get(message_id=msg._maillog_pk)


def set_state(item: OutboxItem, state: str, **fields) -> OutboxItem:
    OutboxItem.objects.filter(pk=item.pk).update(state=state, **fields)
    item.refresh_from_db()
    return item


def shown(response) -> set[str]:
    assert response.status_code == 200, response
    return {row.record.message.subject for row in response.context["table"].rows}


@pytest.fixture
def team():
    return Group.objects.create(name="Support")


@pytest.fixture
def people(team):
    sales = Group.objects.create(name="Sales")
    return {
        "editor": make_user("editor", groups=(team,)),
        "member": make_user("member", "view_message", groups=(team,)),
        "teammate": make_user("teammate", "view_message", groups=(team,)),
        "lead": make_user("lead", "view_message", "lead_team", groups=(team,)),
        "outsider": make_user(
            "outsider", "view_message", "retry_outboxitem", "cancel_outboxitem", groups=(sales,)
        ),
        "auditor": make_user("auditor", "view_all_mail"),
        "retrier": make_user("retrier", "view_message", "retry_outboxitem", groups=(team,)),
        "canceller": make_user("canceller", "view_message", "cancel_outboxitem", groups=(team,)),
        "operator": make_user("operator", "view_all_mail", "manage_connectors"),
        "admin": User.objects.create_superuser("admin", "admin@example.com", "pw"),
    }


@pytest.fixture
def mail(people):
    """Mail of the member, of a teammate, of another team, and of the system."""
    return {
        "mine": queue("Member's own mail", people["member"]),
        "team": queue("Teammate's mail", people["teammate"], to="bob@example.com"),
        "other": queue("Sales mail", people["outsider"], to="carol@example.com"),
        "system": queue("System notice", None, to="dave@example.com"),
    }


# ---- access ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        OUTBOX,
        OUTBOX + "results/",
        OUTBOX + "{pk}/",
        OUTBOX + "{pk}/retry/",
        OUTBOX + "{pk}/cancel/",
        OUTBOX + "connectors/",
        OUTBOX + "connectors/default/disable/",
    ],
)
def test_pages_are_forbidden_without_the_view_permission(people, mail, url):
    response = client_for(people["editor"]).get(url.format(pk=mail["mine"].pk))
    assert denied(response)


def test_anonymous_users_are_sent_to_the_login_page():
    response = Client().get(OUTBOX)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


@pytest.mark.parametrize("action", ["retry", "cancel"])
def test_actions_need_their_permission(people, mail, action):
    item = set_state(mail["mine"], S.FAILED)
    member = client_for(people["member"])
    assert denied(member.get(f"{OUTBOX}{item.pk}/{action}/"))
    assert denied(member.post(f"{OUTBOX}{item.pk}/{action}/"))
    item.refresh_from_db()
    assert item.state == S.FAILED
    # the detail page offers no button for it
    page = member.get(f"{OUTBOX}{item.pk}/").content.decode()
    assert f"{OUTBOX}{item.pk}/{action}/" not in page


def test_other_teams_mail_is_404_by_id(people, mail):
    outsider = client_for(people["outsider"])
    for key in ("mine", "team", "system"):
        pk = mail[key].pk
        assert outsider.get(f"{OUTBOX}{pk}/").status_code == 404
        assert outsider.get(f"{OUTBOX}{pk}/retry/").status_code == 404
        assert outsider.post(f"{OUTBOX}{pk}/cancel/").status_code == 404
    assert OutboxItem.objects.count() == 4
    assert outsider.get(f"{OUTBOX}{mail['other'].pk}/").status_code == 200


def test_the_four_views(people, mail):
    member = client_for(people["member"])
    assert shown(member.get(OUTBOX + "?view=mine")) == {"Member's own mail"}
    assert shown(member.get(OUTBOX + "?view=team")) == {"Member's own mail", "Teammate's mail"}
    assert shown(member.get(OUTBOX + "?view=system")) == set()  # not visible to a member
    assert shown(member.get(OUTBOX + "?view=all")) == {"Member's own mail", "Teammate's mail"}

    auditor = client_for(people["auditor"])
    assert shown(auditor.get(OUTBOX + "?view=system")) == {"System notice"}
    assert len(shown(auditor.get(OUTBOX + "?view=all"))) == 4

    response = member.get(OUTBOX + "?view=team")
    tabs = {v["key"]: v["count"] for v in response.context["outbox_views"]}
    assert tabs == {"mine": 1, "team": 2, "system": 0, "all": 2}
    assert 'data-outbox-view="team" aria-current="page"' in response.content.decode()


def test_team_is_also_the_team_a_mail_was_labelled_with(people, team):
    queue("For the support team", None, team=team, system=False)
    assert shown(client_for(people["member"]).get(OUTBOX + "?view=team")) == {
        "For the support team"
    }


def test_default_view_team_lead_versus_member(people, mail):
    lead_page = client_for(people["lead"]).get(OUTBOX)
    assert lead_page.context["current_view"] == "team"
    assert shown(lead_page) == {"Member's own mail", "Teammate's mail"}
    member_page = client_for(people["member"]).get(OUTBOX)
    assert member_page.context["current_view"] == "mine"
    # a first visit stores nothing: the default follows the permission
    assert not OutboxPreference.objects.exists()


def test_without_a_remembered_view_the_outbox_opens_on_a_view_with_mail(people, mail):
    """A superuser (a team lead without a team) lands on "System emails", not an empty tab."""
    admin = client_for(people["admin"])
    for pk in (mail["mine"].pk, mail["team"].pk, mail["other"].pk):
        OutboxItem.objects.filter(pk=pk).delete()
    page = admin.get(OUTBOX)
    assert page.context["current_view"] == "system"
    assert shown(page) == {"System notice"}
    # the member's own view is empty now: their team's holds mail
    OutboxItem.objects.all().delete()
    queue("Teammate's second mail", people["teammate"])
    assert client_for(people["member"]).get(OUTBOX).context["current_view"] == "team"
    # nothing anywhere: the usual default
    OutboxItem.objects.all().delete()
    assert client_for(people["member"]).get(OUTBOX).context["current_view"] == "mine"
    assert not OutboxPreference.objects.exists()


def test_a_remembered_view_wins_even_when_empty(people, mail):
    member = client_for(people["member"])
    member.get(OUTBOX + "?view=mine")
    OutboxItem.objects.filter(pk=mail["mine"].pk).delete()
    assert member.get(OUTBOX).context["current_view"] == "mine"


# ---- preferences ------------------------------------------------------------------


def test_view_page_size_and_columns_survive_a_new_login(people):
    member = people["member"]
    for i in range(12):
        queue(f"Mail {i:02d}", member)
    first = client_for(member)
    response = first.get(OUTBOX + "?view=team&per_page=10")
    assert len(response.context["table"].rows) == 10
    assert response.context["paginator"].num_pages == 2
    first.post(OUTBOX, {"columns": ["state", "attempts"]})
    first.logout()

    again = client_for(member)  # a new session
    response = again.get(OUTBOX)
    assert response.context["current_view"] == "team"
    assert response.context["page_size"] == 10
    assert len(response.context["table"].rows) == 10
    visible = [c.name for c in response.context["table"].columns]
    assert visible == ["select", "to", "subject", "state", "attempts"]
    pref = OutboxPreference.objects.get(user=member)
    assert pref.view == "team" and pref.page_size == 10 and "connector" in pref.columns


def test_page_size_is_one_of_the_choices(people):
    member = people["member"]
    for i in range(12):
        queue(f"Mail {i:02d}", member)
    client = client_for(member)
    response = client.get(OUTBOX + "?per_page=7")
    assert response.context["page_size"] == 25
    assert len(response.context["table"].rows) == 12
    assert not OutboxPreference.objects.exists()
    page = client.get(OUTBOX).content.decode()
    assert '<option value="25" selected>' in page
    assert all(f'<option value="{n}"' in page for n in (10, 50, 100))


def test_a_compact_set_of_columns_until_the_user_chooses(people, mail):
    response = client_for(people["retrier"]).get(OUTBOX + "?view=team")
    visible = [c.name for c in response.context["table"].columns]
    assert visible == [
        "select",
        "to",
        "subject",
        "state",
        "attempts",
        "connector",
        "last_error",
        "first_failure_at",
        "next_attempt_at",
    ]
    # the chooser offers every column of the help page
    offered = [c["name"] for c in response.context["column_choices"]]
    assert offered == list(OPTIONAL_COLUMNS)
    # the view choice was remembered; the columns stay as they were
    again = client_for(people["retrier"]).get(OUTBOX)
    assert [c.name for c in again.context["table"].columns] == visible


def test_row_actions_follow_the_permissions(people, mail):
    busy = set_state(mail["team"], S.SENDING)
    page = client_for(people["retrier"]).get(OUTBOX + "?view=team").content.decode()
    assert f"{OUTBOX}{mail['mine'].pk}/retry/" in page
    assert f"{OUTBOX}{busy.pk}/retry/" not in page  # being handed over
    assert "/cancel/" not in page.split("<tbody>")[1].split("</tbody>")[0]
    assert "More options for &#x27;Member&#x27;s own mail&#x27;" in page  # Wagtail's ⋯ menu
    member_page = client_for(people["member"]).get(OUTBOX + "?view=team").content.decode()
    assert f"{OUTBOX}{mail['mine'].pk}/retry/" not in member_page
    assert f"{OUTBOX}{mail['mine'].pk}/cancel/" not in member_page
    # without an action permission the menu still opens the mail, in full or quickly
    assert "More options for &#x27;Member&#x27;s own mail&#x27;" in member_page
    assert re.search(rf'href="{OUTBOX}{mail["mine"].pk}/"[^>]*data-action-name="open"', member_page)
    assert f'data-maillog-quick-view="{OUTBOX}{mail["mine"].pk}/quick/"' in member_page


def test_quick_view_shows_the_mail_with_retry_and_cancel(people, mail):
    item = set_state(mail["mine"], S.RETRY_PENDING, attempts=1, last_error="Connection reset")
    response = client_for(people["outsider"]).get(f"{OUTBOX}{item.pk}/quick/")
    assert response.status_code == 404  # another team's mail: not even its existence
    for who, retry, cancel in [("member", False, False), ("retrier", True, False)]:
        response = client_for(people[who]).get(f"{OUTBOX}{item.pk}/quick/")
        assert response.status_code == 200 and response["Content-Type"] == "application/json"
        data = response.json()
        assert data["step"] == "quick_view"
        html = data["html"]
        assert "Member&#x27;s own mail" in html and "Connection reset" in html
        assert "ann@example.com" in html
        assert (f"{OUTBOX}{item.pk}/retry/" in html) is retry, who
        assert (f"{OUTBOX}{item.pk}/cancel/" in html) is cancel, who
        assert f'href="{OUTBOX}{item.pk}/"' in html  # the full page
    html = client_for(people["canceller"]).get(f"{OUTBOX}{item.pk}/quick/").json()["html"]
    assert f"{OUTBOX}{item.pk}/cancel/" in html
    busy = set_state(item, S.SENDING)
    html = client_for(people["admin"]).get(f"{OUTBOX}{busy.pk}/quick/").json()["html"]
    assert "/retry/" not in html and "/cancel/" not in html
    assert "being handed to its connector" in html


def test_the_listing_page_loads_the_quick_view_script(people, mail):
    page = client_for(people["member"]).get(OUTBOX).content.decode()
    assert "wagtailadmin/js/modal-workflow.js" in page
    assert "wagtail_maillog/js/outbox-quick-view.js" in page


def test_to_and_subject_cannot_be_hidden(people, mail):
    client = client_for(people["member"])
    response = client.post(OUTBOX + "?view=mine", {"columns": []})
    assert response.status_code == 302 and response["Location"] == OUTBOX + "?view=mine"
    response = client.get(OUTBOX)
    assert [c.name for c in response.context["table"].columns] == ["select", "to", "subject"]
    page = response.content.decode()
    assert 'data-column="to"' in page and 'data-column="subject"' in page
    assert 'data-column="connector"' not in page
    assert "ann<wbr>@example.com" in page
    # asking to hide them changes nothing
    client.post(OUTBOX, {"columns": ["to", "subject", "connector"]})
    visible = [c.name for c in client.get(OUTBOX).context["table"].columns]
    assert visible == ["select", "to", "subject", "connector"]
    assert not {"to", "subject"} & set(OutboxPreference.objects.get().columns)


def test_every_column_of_the_help_page(people, mail):
    invoice = Invoice.objects.create(number="2026-007")
    item = queue("Reminder", people["member"], related=invoice, importance="high")
    item = set_state(item, S.FAILED, attempts=3, last_error="ESP says no")
    client = client_for(people["member"])
    client.post(OUTBOX, {"columns": list(OPTIONAL_COLUMNS)})
    response = client.get(OUTBOX)
    headers = [str(c.header) for c in response.context["table"].columns]
    assert headers == [
        "",
        "To",
        "Subject",
        "Send state",
        "Attempts",
        "Connector",
        "Importance",
        "System-generated",
        "Last attempt",
        "Last failure message",
        "Registered",
        "Next attempt",
        "Related object",
        "Related type",
        "Attachments",
    ]
    page = response.content.decode()
    row = page[page.index(f'data-outbox-item="{item.pk}"') :]
    row = row[: row.index("</tr>")]
    assert "ESP says no" in row and "High" in row and "2026-007" in row and "Invoice" in row
    assert 'data-status="failed"' in row and "/admin/maillog/related/" in row
    assert f"{OUTBOX}{item.pk}/" in row


# ---- escaping -----------------------------------------------------------------------


def test_a_script_subject_is_escaped_everywhere(people):
    admin = client_for(people["admin"])
    item = set_state(queue(XSS, people["admin"], to="x@example.com"), S.FAILED, last_error=XSS)
    pages = [
        OUTBOX + "?view=all",
        OUTBOX + "results/?view=all",
        f"{OUTBOX}{item.pk}/",
        f"{OUTBOX}{item.pk}/retry/",
        f"{OUTBOX}{item.pk}/cancel/",
        f"{BULK}retry/?id={item.pk}",
        f"{BULK}cancel/?id={item.pk}",
    ]
    for url in pages:
        page = admin.get(url).content.decode()
        assert XSS not in page, url
        assert ESCAPED in page, url
    response = admin.post(f"{OUTBOX}{item.pk}/cancel/", follow=True)
    page = response.content.decode()
    assert XSS not in page and ESCAPED in page


# ---- single retry and cancel -----------------------------------------------------------


def test_retry_through_the_confirmation_page(people, mail):
    item = set_state(mail["mine"], S.FAILED, attempts=3, auto_retry=False)
    Recipient.objects.filter(message=item.message).update(status=Status.FAILED)
    client = client_for(people["retrier"])
    page = client.get(f"{OUTBOX}{item.pk}/").content.decode()
    assert f"{OUTBOX}{item.pk}/retry/" in page
    assert client.get(f"{OUTBOX}{item.pk}/retry/").status_code == 200
    item.refresh_from_db()
    assert item.state == S.FAILED  # a GET changes nothing

    response = client.post(f"{OUTBOX}{item.pk}/retry/", follow=True)
    assert "The mail will be sent again shortly." in response.content.decode()
    item.refresh_from_db()
    assert item.state == S.RETRY_PENDING and item.auto_retry
    assert Recipient.objects.get(message=item.message).status == Status.PENDING


def test_retry_needs_csrf(people, mail):
    item = set_state(mail["mine"], S.FAILED)
    client = Client(enforce_csrf_checks=True)
    client.force_login(people["retrier"])
    assert client.post(f"{OUTBOX}{item.pk}/retry/").status_code == 403
    item.refresh_from_db()
    assert item.state == S.FAILED


def test_cancel_through_the_confirmation_page(people, mail):
    item = mail["team"]
    client = client_for(people["canceller"])
    assert "Yes, cancel sending" in client.get(f"{OUTBOX}{item.pk}/cancel/").content.decode()
    response = client.post(f"{OUTBOX}{item.pk}/cancel/")
    assert response.status_code == 302 and response["Location"] == OUTBOX
    assert not OutboxItem.objects.filter(pk=item.pk).exists()
    recipient = Recipient.objects.get(message=item.message)
    assert recipient.status == Status.CANCELLED and "canceller" in recipient.reason
    page = client.get(OUTBOX).content.decode()
    assert "it left the outbox" in page
    assert f"/admin/maillog/{item.message_id}/" in page  # "view in the mail log"


def test_cancel_is_refused_while_sending(people, mail):
    item = set_state(mail["mine"], S.SENDING)
    client = client_for(people["canceller"])
    page = client.get(f"{OUTBOX}{item.pk}/cancel/").content.decode()
    assert "can no longer be cancelled" in page and "Yes, cancel sending" not in page
    response = client.post(f"{OUTBOX}{item.pk}/cancel/", follow=True)
    assert "can no longer be cancelled" in response.content.decode()
    assert OutboxItem.objects.filter(pk=item.pk, state=S.SENDING).exists()
    detail = client.get(f"{OUTBOX}{item.pk}/").content.decode()
    assert f"{OUTBOX}{item.pk}/cancel/" not in detail


def test_detail_shows_attempts_errors_and_links(people, mail):
    item = set_state(
        mail["mine"], S.RETRY_PENDING, attempts=1, last_error="AnymailAPIError: ESP says no"
    )
    item.message.attempts.create(outcome="failed", connector="default", error="ESP says <no>")
    page = client_for(people["member"]).get(f"{OUTBOX}{item.pk}/").content.decode()
    assert "ESP says &lt;no&gt;" in page
    assert "AnymailAPIError: ESP says no" in page
    assert 'data-status="retry_pending"' in page
    assert f'href="/admin/maillog/{item.message_id}/"' in page
    assert "ann@example.com" in page


# ---- bulk actions ------------------------------------------------------------------------


def test_bulk_retry_ignores_what_the_user_may_not_see(people, mail):
    own = set_state(mail["mine"], S.FAILED)
    team = set_state(mail["team"], S.FAILED)
    other = set_state(mail["other"], S.FAILED)
    busy = set_state(queue("Being sent", people["teammate"]), S.SENDING)
    client = client_for(people["retrier"])
    ids = "&".join(f"id={i.pk}" for i in (own, team, other, busy))
    url = f"{BULK}retry/?next={OUTBOX}&{ids}"

    page = client.get(url).content.decode()
    assert "Member&#x27;s own mail" in page and "Teammate&#x27;s mail" in page
    assert "Sales mail" not in page  # not even listed
    assert "Being sent" in page and "being handed over" in page

    response = client.post(url)
    assert response.status_code == 302 and response["Location"] == OUTBOX
    states = dict(OutboxItem.objects.values_list("pk", "state"))
    assert states[own.pk] == states[team.pk] == S.RETRY_PENDING
    assert states[other.pk] == S.FAILED and states[busy.pk] == S.SENDING
    assert "2 mails will be sent again shortly." in client.get(OUTBOX).content.decode()


def test_bulk_cancel(people, mail):
    own, team, other = mail["mine"], mail["team"], mail["other"]
    client = client_for(people["canceller"])
    url = f"{BULK}cancel/?next={OUTBOX}&id={own.pk}&id={team.pk}&id={other.pk}"
    response = client.post(url)
    assert response.status_code == 302
    assert set(OutboxItem.objects.values_list("pk", flat=True)) == {other.pk, mail["system"].pk}
    assert Recipient.objects.get(message=own.message).status == Status.CANCELLED


def test_bulk_actions_need_their_permission(people, mail):
    item = set_state(mail["mine"], S.FAILED)
    client = client_for(people["member"])
    for action in ("retry", "cancel"):
        url = f"{BULK}{action}/?next={OUTBOX}&id={item.pk}"
        page = client.get(url).content.decode()
        assert "left alone" in page and "Yes," not in page
        client.post(url)
    item.refresh_from_db()
    assert item.state == S.FAILED


def test_bulk_for_users_without_the_view_permission_touches_nothing(people, mail):
    client = client_for(people["editor"])
    client.post(f"{BULK}cancel/?next={OUTBOX}&id={mail['mine'].pk}")
    assert OutboxItem.objects.count() == 4


def test_bulk_select_all_in_listing_follows_the_view(people, mail):
    client = client_for(people["admin"])
    client.post(f"{BULK}cancel/?view=system&id=all&next={OUTBOX}")
    assert not OutboxItem.objects.filter(pk=mail["system"].pk).exists()
    assert OutboxItem.objects.count() == 3


def test_bulk_select_all_without_a_view_takes_the_view_the_list_opened_on(people, mail):
    """A superuser with no mail of their own saw "System emails": "all" is that view."""
    client = client_for(people["admin"])
    assert client.get(OUTBOX).context["current_view"] == "system"
    client.post(f"{BULK}cancel/?id=all&next={OUTBOX}")
    assert not OutboxItem.objects.filter(pk=mail["system"].pk).exists()
    assert OutboxItem.objects.count() == 3


def test_the_listing_has_the_bulk_action_footer(people, mail):
    page = client_for(people["retrier"]).get(OUTBOX + "?view=team").content.decode()
    assert 'data-bulk-action-footer="OUTBOXITEM"' in page
    assert f"{BULK}retry/" in page and f"{BULK}cancel/" not in page  # no cancel permission
    assert f'data-object-id="{mail["mine"].pk}"' in page


# ---- menu --------------------------------------------------------------------------------


def _outbox_menu_item() -> OutboxMenuItem:
    return next(
        item
        for item in (fn() for fn in hooks.get_hooks("register_maillog_menu_item"))
        if isinstance(item, OutboxMenuItem)
    )


def test_menu_item_shows_the_count_the_user_can_see(people, mail):
    member_page = client_for(people["member"]).get("/admin/").content.decode()
    assert "Outbox (2)" in member_page
    assert "Outbox (4)" in client_for(people["auditor"]).get("/admin/").content.decode()
    assert "Outbox" not in client_for(people["editor"]).get("/admin/").content.decode()


def test_menu_item_without_mail_has_no_number(people):
    page = client_for(people["member"]).get("/admin/").content.decode()
    assert "Outbox" in page and "Outbox (" not in page


@pytest.mark.parametrize("who", ["member", "auditor"])
def test_menu_count_costs_one_count_query(people, mail, who):
    request = RequestFactory().get("/admin/")
    request.user = User.objects.get(username=who)
    item = build_menu_item()
    assert item.is_shown(request)  # loads the permissions once, as the admin does anyway
    with CaptureQueriesContext(connection) as queries:
        component = item.render_component(request)
        item.render_component(request)  # a second render in the same request: cached
    sql = [q["sql"].upper() for q in queries]
    # Who sees only their own and their team's mail: first their team's ids, once.
    assert len(sql) == (2 if who == "member" else 1), sql
    assert "COUNT(" in sql[-1] and all("COUNT(" not in q for q in sql[:-1])
    expected = 2 if who == "member" else 4
    assert component.label == f"Outbox ({expected})"
    assert component.attrs["data-maillog-outbox-count"] == str(expected)


def test_the_mail_menu_item_shows_the_count_while_closed(people, mail):
    """The top-level "Mail" item carries the count: no need to open the submenu."""
    assert "Mail (2)" in client_for(people["member"]).get("/admin/").content.decode()
    assert "Mail (4)" in client_for(people["auditor"]).get("/admin/").content.decode()
    OutboxItem.objects.all().delete()
    page = client_for(people["member"]).get("/admin/").content.decode()
    assert '"Mail"' in page and "Mail (" not in page


@pytest.mark.parametrize("url, expected", [("/admin/", 1), (OUTBOX, 2)])
def test_mail_and_outbox_menu_items_share_one_count_query(people, mail, url, expected):
    """One COUNT for both menu items; on the outbox none: its tabs' counts serve
    (the second COUNT there is the paginator's)."""
    client = client_for(people["member"])
    client.get(url)  # warm caches (content types, site, permissions)
    with CaptureQueriesContext(connection) as queries:
        page = client.get(url).content.decode()
    counts = [
        q["sql"]
        for q in queries
        if "COUNT(" in q["sql"].upper() and "outboxitem" in q["sql"].lower()
    ]
    assert len(counts) == expected, counts
    assert "Mail (2)" in page and "Outbox (2)" in page


def test_menu_item_is_registered_in_the_mail_submenu():
    item = _outbox_menu_item()
    assert item.url == OUTBOX and item.name == "outbox"


def test_new_permissions_are_offered_to_groups():
    codenames = set()
    for fn in hooks.get_hooks("register_permissions"):
        codenames |= set(fn().values_list("codename", flat=True))
    assert {"retry_outboxitem", "cancel_outboxitem", "manage_connectors", "lead_team"} <= codenames


# ---- search, filters, ordering --------------------------------------------------------


def test_search_filter_and_order(people, mail):
    admin = client_for(people["admin"])
    set_state(mail["other"], S.FAILED, attempts=5)
    assert shown(admin.get(OUTBOX + "?view=all&q=carol@")) == {"Sales mail"}
    assert shown(admin.get(OUTBOX + "?view=all&q=teammate")) == {"Teammate's mail"}
    assert shown(admin.get(OUTBOX + "?view=all&state=failed")) == {"Sales mail"}
    response = admin.get(OUTBOX + "?view=all&ordering=-attempts")
    assert response.context["table"].rows[0].record.pk == mail["other"].pk
    assert admin.get(OUTBOX + "?view=all&connector=smtp").status_code == 200


def test_the_listing_costs_the_same_queries_for_more_rows(people):
    member = people["member"]
    client = client_for(member)
    queue("First", member)
    client.get(OUTBOX)  # sessions, permissions and the like warmed up
    with CaptureQueriesContext(connection) as few:
        client.get(OUTBOX)
    for i in range(10):
        queue(f"More {i}", member, to=f"x{i}@example.com")
    with CaptureQueriesContext(connection) as many:
        response = client.get(OUTBOX)
    assert len(response.context["table"].rows) == 11
    assert len(many) == len(few), [q["sql"] for q in many]


# ---- connectors ---------------------------------------------------------------------------


def test_connectors_page_lists_them(people, mail):
    page = client_for(people["member"]).get(OUTBOX + "connectors/").content.decode()
    for name in ("default", "smtp", "off", "tests.esp.ScriptedBackend"):
        assert name in page
    assert "/connectors/default/disable/" not in page  # no permission to switch


def test_connector_toggle(people, mail):
    client = client_for(people["operator"])
    page = client.get(OUTBOX + "connectors/").content.decode()
    assert f"{OUTBOX}connectors/default/disable/" in page
    assert (
        "4 mails in the outbox wait for it"
        in client.get(OUTBOX + "connectors/default/disable/").content.decode()
    )

    response = client.post(OUTBOX + "connectors/default/disable/", follow=True)
    assert (
        "The connector default is disabled: 4 mails in the outbox wait until it is enabled again."
        in response.content.decode()
    )
    assert set(OutboxItem.objects.values_list("state", flat=True)) == {S.CONNECTOR_DISABLED}
    state = ConnectorState.objects.get(name="default")
    assert state.enabled is False and state.changed_by == people["operator"]
    listing = client.get(OUTBOX + "?view=all").content.decode()
    assert "The connectors default, off are disabled" in listing

    client.post(OUTBOX + "connectors/default/enable/")
    assert set(OutboxItem.objects.values_list("state", flat=True)) == {S.QUEUED}  # as before


def test_connector_toggle_counts_the_mail_that_waits_not_the_rows_it_moved(people, mail):
    """Mail that is not due keeps its state when a connector is switched; it still waits."""
    set_state(mail["mine"], S.SCHEDULED, next_attempt_at=timezone.now() + timedelta(days=1))
    client = client_for(people["operator"])
    off = client.post(OUTBOX + "connectors/default/disable/", follow=True).content.decode()
    assert "disabled: 4 mails in the outbox wait until it is enabled again." in off
    on = client.post(OUTBOX + "connectors/default/enable/", follow=True).content.decode()
    assert "enabled: 4 mails in the outbox go through it again." in on
    assert OutboxItem.objects.get(pk=mail["mine"].pk).state == S.SCHEDULED


def test_a_scheduled_mail_never_tried_has_no_retry_and_no_first_failure(people, mail):
    item = set_state(mail["mine"], S.SCHEDULED, next_attempt_at=timezone.now() + timedelta(days=1))
    client = client_for(people["admin"])
    page = client.get(f"{OUTBOX}{item.pk}/").content.decode()
    assert f"{OUTBOX}{item.pk}/retry/" not in page
    assert "first failure" not in page
    assert "has not been tried yet" in page
    listing = client.get(OUTBOX + "?view=all").content.decode()
    assert f"{OUTBOX}{item.pk}/retry/" not in listing
    client.post(f"{OUTBOX}{item.pk}/retry/")
    assert OutboxItem.objects.get(pk=item.pk).state == S.SCHEDULED


def test_connector_toggle_needs_its_permission(people, mail):
    client = client_for(people["auditor"])
    assert denied(client.get(OUTBOX + "connectors/default/disable/"))
    assert denied(client.post(OUTBOX + "connectors/default/disable/"))
    assert not ConnectorState.objects.exists()


def test_a_connector_off_in_settings_cannot_be_enabled_here(people):
    client = client_for(people["operator"])
    page = client.get(OUTBOX + "connectors/off/enable/").content.decode()
    assert "switched off in the settings" in page and "Yes, enable" not in page
    client.post(OUTBOX + "connectors/off/enable/")
    assert not ConnectorState.objects.exists()
    assert client.get(OUTBOX + "connectors/nope/enable/").status_code == 404


@pytest.mark.parametrize(
    ("who", "buttons"),
    [
        ("member", set()),
        ("retrier", {"retry"}),
        ("canceller", {"cancel"}),
        ("admin", {"retry", "cancel"}),
    ],
)
def test_bulk_buttons_are_shown_only_with_their_permission(people, mail, who, buttons):
    html = client_for(people[who]).get(OUTBOX).content.decode()
    shown_actions = set(re.findall(r"/bulk/wagtail_maillog/outboxitem/(\w+)/", html))
    assert shown_actions == buttons


# ---- issue #17: retry from the mail log ---------------------------------------------


def test_the_mail_log_detail_of_waiting_mail_offers_retry_and_cancel_of_the_outbox(people, mail):
    from anymail.exceptions import AnymailAPIError

    from wagtail_maillog.outbox import worker

    ScriptedBackend.script = [AnymailAPIError("ESP says no")]  # the first hand-over fails
    worker.process_outbox(time_budget=5)
    item = OutboxItem.objects.get(message__subject="Member's own mail")
    assert item.state == S.RETRY_PENDING and item.attempts == 1
    log_url = f"/admin/maillog/{item.message_id}/"

    page = client_for(people["admin"]).get(log_url).content.decode()
    assert "In the outbox" in page
    assert 'data-status="retry_pending"' in page
    assert re.search(r'maillog-in-outbox__attempts">\s*1\s*<', page)
    assert "AnymailAPIError: ESP says no" in page
    assert f'href="{OUTBOX}{item.pk}/"' in page  # open in the outbox
    assert f'href="{OUTBOX}{item.pk}/retry/"' in page
    assert f'href="{OUTBOX}{item.pk}/cancel/"' in page
    assert page.count("Cancel sending") == 1  # the outbox's; not the mail log's as well

    # the same permissions as the outbox: a member sees the state, not the buttons
    member = client_for(people["member"]).get(log_url).content.decode()
    assert "In the outbox" in member and f"{OUTBOX}{item.pk}/retry/" not in member
    assert f"{OUTBOX}{item.pk}/cancel/" not in member
    retrier = client_for(people["retrier"]).get(log_url).content.decode()
    assert f"{OUTBOX}{item.pk}/retry/" in retrier and f"{OUTBOX}{item.pk}/cancel/" not in retrier
    # another team's member may not see that outbox item at all: no section
    assert client_for(people["outsider"]).get(log_url).status_code == 404

    # the button leads to the outbox's confirmation; the retry sends it
    retry = client_for(people["retrier"]).post(f"{OUTBOX}{item.pk}/retry/", follow=True)
    assert "The mail will be sent again shortly." in retry.content.decode()
    worker.process_outbox(time_budget=5)
    assert not OutboxItem.objects.filter(pk=item.pk).exists()
    after = client_for(people["retrier"]).get(log_url).content.decode()
    assert "In the outbox" not in after  # handed over: nothing waits any more


def test_failed_mail_in_the_outbox_shows_no_next_attempt_but_retry(people, mail):
    item = set_state(mail["mine"], S.FAILED, attempts=3, auto_retry=False, next_attempt_at=None)
    page = client_for(people["retrier"]).get(f"/admin/maillog/{item.message_id}/").content.decode()
    assert 'data-status="failed"' in page
    assert "None: only a manual retry sends it" in page
    assert f"{OUTBOX}{item.pk}/retry/" in page


# ---- the mail log's row menu ---------------------------------------------------------

LOG = "/admin/maillog/"


def test_mail_log_rows_have_a_more_menu_with_the_allowed_actions(people, mail, settings):
    """Open always; Cancel sending on a row still pending; Resend where the message can be."""
    settings.WAGTAIL_MAILLOG = {**settings.WAGTAIL_MAILLOG, "STORE_BODY": True}
    msg = EmailMessage("Stored mail", "Body", "site@example.com", ["erin@example.com"])
    label(msg, user=people["member"])
    msg.send()
    stored = Recipient.objects.get(address="erin@example.com").message_id
    mine = mail["mine"].message_id
    assert Recipient.objects.get(message_id=mine).status == Status.PENDING
    worker = make_user(
        "worker",
        "view_message",
        "resend_message",
        "cancel_message",
        groups=(people["member"].groups.first(),),
    )
    page = client_for(worker).get(LOG).content.decode()
    assert "More options for &#x27;Member&#x27;s own mail&#x27;" in page
    assert re.search(rf'href="{LOG}{mine}/"[^>]*data-action-name="open"', page)
    assert f'href="{LOG}{mine}/cancel/"' in page  # pending: can still be stopped
    assert f'href="{LOG}{stored}/resend/"' in page  # body stored, no attachment
    assert f'href="{LOG}{mine}/resend/"' not in page  # body not stored: nothing to resend

    plain = client_for(people["member"]).get(LOG).content.decode()
    assert re.search(rf'href="{LOG}{mine}/"[^>]*data-action-name="open"', plain)
    assert "/cancel/" not in plain and "/resend/" not in plain


# ---- Wagtail's looks: icon buttons, dates (#18) ------------------------------------------

TEMPLATES = Path(__file__).resolve().parent.parent / "wagtail_maillog" / "templates"
#: An element styled as a button whose content starts with a wrapped icon.
ICON_BUTTON = re.compile(
    r'<(?:a|button|summary)\b[^>]*\bclass="([^"]*\bbutton\b[^"]*)"[^>]*>\s*'
    r"\{% icon [^%]*wrapped=1 %\}"
)


def test_every_button_with_an_icon_is_a_wagtail_icon_button():
    """One style, Wagtail's (its listings' and forms' ``button bicolor button--icon``):
    the icon in its own block, not touching the label."""
    found = {}
    for path in TEMPLATES.rglob("*.html"):
        for match in ICON_BUTTON.finditer(path.read_text()):
            found[f"{path.relative_to(TEMPLATES)}: {match.group(0)[:60]}"] = match.group(1)
    assert len(found) > 20
    odd = {
        where: classes
        for where, classes in found.items()
        if not {"bicolor", "button--icon"} <= set(classes.split())
    }
    assert not odd


def test_outbox_buttons_are_wagtail_icon_buttons_on_every_page(people, mail):
    item = set_state(mail["mine"], S.RETRY_PENDING, attempts=1)
    admin = client_for(people["admin"])
    pages = {
        "detail": admin.get(f"{OUTBOX}{item.pk}/").content.decode(),
        "quick view": admin.get(f"{OUTBOX}{item.pk}/quick/").json()["html"],
        "mail log": admin.get(f"/admin/maillog/{item.message_id}/").content.decode(),
    }
    for name, page in pages.items():
        for action in ("retry", "cancel"):
            link = re.search(rf'<a class="([^"]*)" href="{OUTBOX}{item.pk}/{action}/"', page)
            assert link and {"bicolor", "button--icon"} <= set(link.group(1).split()), name
    confirm = admin.get(f"{OUTBOX}{item.pk}/retry/").content.decode()
    assert '<button type="submit" class="button bicolor button--icon">' in confirm


def test_outbox_and_attempt_dates_read_as_wagtails_listings(people, mail):
    now = timezone.now()
    item = set_state(
        mail["mine"],
        S.RETRY_PENDING,
        attempts=1,
        created_at=now - timedelta(hours=3),
        last_attempt_at=now - timedelta(hours=2),
        next_attempt_at=now + timedelta(hours=2, seconds=30),
    )
    item.message.attempts.create(at=now - timedelta(hours=2), outcome="failed", error="no")
    admin = client_for(people["admin"])
    detail = admin.get(f"{OUTBOX}{item.pk}/").content.decode()
    log = admin.get(f"/admin/maillog/{item.message_id}/").content.decode()
    quick = admin.get(f"{OUTBOX}{item.pk}/quick/").json()["html"]
    hover = 'class="w-human-readable-date" data-controller="w-tooltip"'
    for page in (detail, log):  # the send attempts table
        attempts = page.split("Send attempts")[1].split("</table>")[0]
        assert hover in attempts and "2\xa0hours ago" in attempts
    for page in (detail, quick):
        assert "3\xa0hours ago" in page  # in the outbox since
        assert "In 2\xa0hours" in page  # the next attempt, still to come
        exact = date_format(timezone.localtime(item.next_attempt_at), "DATETIME_FORMAT")
        assert f'data-w-tooltip-content-value="{exact}"' in page
        short = date_format(timezone.localtime(item.last_attempt_at), "SHORT_DATETIME_FORMAT")
        assert short not in page
    assert "In 2\xa0hours" in log  # "In the outbox" on the mail log page

    due = set_state(item, S.RETRY_PENDING, next_attempt_at=now - timedelta(minutes=5))
    assert "Due now" in admin.get(f"{OUTBOX}{due.pk}/").content.decode()
