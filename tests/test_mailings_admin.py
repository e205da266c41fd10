"""The Mailings admin pages: compose, preview, test, send, results, and who may do which."""

from __future__ import annotations

import json

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse
from wagtail.models import PageViewRestriction

from tests.testapp.models import Member
from tests.utils import client_for, denied, make_user
from wagtail_maillog.addresses.health import set_status
from wagtail_maillog.mailings import content
from wagtail_maillog.models import AddressStatus, Mailing, MailingState, Recipient
from wagtail_maillog.outbox import worker

pytestmark = pytest.mark.django_db

COMPOSE = ("add_mailing", "change_mailing")


def body_json(text: str) -> str:
    """What Wagtail's rich text editor posts for one paragraph."""
    block = {
        "key": "a1b2c",
        "text": text,
        "type": "unstyled",
        "depth": 0,
        "inlineStyleRanges": [],
        "entityRanges": [],
    }
    return json.dumps({"blocks": [block], "entityMap": {}})


@pytest.fixture(autouse=True)
def setup(settings):
    settings.WAGTAIL_MAILLOG = {
        "CONNECTORS": {"newsletter": {"BACKEND": "anymail.backends.test.EmailBackend"}},
        "DEFAULT_CONNECTOR": "newsletter",
    }
    for i in range(3):
        Member.objects.create(name=f"M{i}", email=f"m{i}@example.com")
    set_status([(f"m{i}@example.com", AddressStatus.CONFIRMED, "t") for i in range(3)])
    Member.objects.create(name="Bounced", email="b@example.com")
    set_status([("b@example.com", AddressStatus.BOUNCED, "t")])


def url(name: str, mailing: Mailing | None = None) -> str:
    args = [mailing.pk] if mailing else []
    return reverse(f"wagtail_maillog_mailings:{name}", args=args)


def mailing(**kwargs: object) -> Mailing:
    values = {"subject": "Hello {{ name }}", "body": "<p>Hi {{ name }}</p>", "audience": "members"}
    return Mailing.objects.create(**{**values, **kwargs})


def test_editor_composes_previews_and_tests_but_cannot_send():
    editor = make_user("editor", *COMPOSE)
    client = client_for(editor)
    assert client.get(url("index")).status_code == 200
    response = client.post(
        url("add"),
        {
            "subject": "Spring news for {{ name }}",
            "from_email": "",
            "reply_to": "",
            "body": body_json("Hello {{ name }}, spring is here."),
            "page": "",
            "audience": "members",
            "connector": "",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    created = Mailing.objects.get()
    assert created.state == MailingState.DRAFT
    assert "Hello {{ name }}" in created.body

    preview = client.get(url("preview", created))
    assert preview.status_code == 200
    html = preview.content.decode()
    assert 'class="maillog-preview-receive">3<' in html
    assert "Problem (bounced)" in html  # the member left out, and why
    assert "Spring news for" in html
    frame = client.get(url("preview_html", created))
    assert "spring is here" in frame.content.decode()
    assert "sandbox" in frame["Content-Security-Policy"]

    assert client.post(url("test", created)).status_code == 302
    (test,) = mail.outbox
    assert test.to == ["editor@example.com"]

    assert denied(client.get(url("send", created)))
    assert denied(client.post(url("send", created), {"when": "now"}))
    assert denied(client.get(url("progress", created)))
    created.refresh_from_db()
    assert created.state == MailingState.DRAFT


def test_publisher_sends_and_results_viewer_follows(django_capture_on_commit_callbacks):
    draft = mailing()
    publisher = client_for(make_user("pub", "send_mailing"))
    page = publisher.get(url("send", draft))
    assert page.status_code == 200
    assert "<strong>3</strong>" in page.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        response = publisher.post(url("send", draft), {"when": "now"})
    assert response.status_code == 302
    draft.refresh_from_db()
    assert draft.state == MailingState.QUEUED
    worker.process_outbox(time_budget=5)

    assert denied(publisher.get(url("progress", draft)))  # sending is not seeing results
    overview = publisher.get(url("overview", draft)).content.decode()
    assert "maillog-progress" not in overview

    viewer = client_for(make_user("viewer", "view_mailing_results"))
    progress = viewer.get(url("progress", draft)).content.decode()
    assert 'data-percent="100"' in progress
    assert 'data-count-status="sent"' in progress
    assert "Problem (bounced)" in progress  # left out, with the reason
    refresh = viewer.post(url("refresh", draft), HTTP_X_REQUESTED_WITH="fetch")
    assert refresh.status_code == 200
    assert "Results last updated" in refresh.content.decode()


def test_the_members_left_out_are_listed_in_the_order_of_the_address_statuses(
    django_capture_on_commit_callbacks,
):
    """Unconfirmed, requested, then the problems as AddressStatus lists them
    (not the alphabetical order of the status codes), in the preview and the results."""
    for name, status in (
        ("Spam", AddressStatus.SPAM),
        ("Blocked", AddressStatus.BLOCKED),
        ("Requested", AddressStatus.REQUESTED),
        ("Unconfirmed", AddressStatus.UNCONFIRMED),
        ("Invalid", AddressStatus.INVALID),
        ("Unsubscribed", AddressStatus.UNSUBSCRIBED),
    ):
        Member.objects.create(name=name, email=f"{name.lower()}@example.com")
        set_status([(f"{name.lower()}@example.com", status, "t")])
    expected = [
        ("Unconfirmed", 1),
        ("Confirmation requested", 1),
        ("Problem (bounced)", 1),
        ("Problem (spam)", 1),
        ("Problem (unsubscribed)", 1),
        ("Problem (blocked)", 1),
        ("Problem (invalid address)", 1),
    ]
    draft = mailing()
    client = client_for(make_user("boss", *COMPOSE, "send_mailing", "view_mailing_results"))
    assert client.get(url("preview", draft)).context["skipped"] == expected
    with django_capture_on_commit_callbacks(execute=True):
        client.post(url("send", draft), {"when": "now"})
    assert client.get(url("progress", draft)).context["skipped"] == expected


def test_edit_of_a_sent_mailing_goes_to_its_overview(django_capture_on_commit_callbacks):
    sent = mailing(state=MailingState.QUEUED)
    client = client_for(make_user("ed", *COMPOSE))
    response = client.get(url("edit", sent))
    assert response.status_code == 302
    assert response["Location"] == url("overview", sent)


def test_scheduling_and_cancelling_from_the_admin():
    draft = mailing()
    client = client_for(make_user("pub", "send_mailing"))
    bad = client.post(url("send", draft), {"when": "later", "send_at": "2000-01-01 10:00"})
    assert bad.status_code == 200  # the form says the time is in the past
    response = client.post(url("send", draft), {"when": "later", "send_at": "2099-01-01 10:00"})
    assert response.status_code == 302
    draft.refresh_from_db()
    assert draft.state == MailingState.SCHEDULED
    assert client.get(url("cancel", draft)).status_code == 200
    client.post(url("cancel", draft))
    draft.refresh_from_db()
    assert draft.state == MailingState.CANCELLED


def test_anonymous_and_unprivileged_users_get_nothing():
    draft = mailing()
    anonymous = Client()
    for name in ("index", "add"):
        assert anonymous.get(url(name)).status_code == 302
    for name in ("overview", "preview", "preview_html", "send", "cancel", "progress"):
        response = anonymous.get(url(name, draft))
        assert response.status_code == 302 and "/login/" in response["Location"], name
    nobody = client_for(make_user("nobody"))
    for name in ("overview", "preview", "preview_html", "send", "cancel", "progress"):
        assert denied(nobody.get(url(name, draft))), name
    for name in ("test", "send", "cancel", "refresh"):
        assert denied(nobody.post(url(name, draft))), name
    assert mail.outbox == []


def test_posts_need_a_csrf_token():
    draft = mailing()
    user = make_user("pub", "send_mailing", *COMPOSE)
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.post(url("send", draft), {"when": "now"}).status_code == 403
    assert client.post(url("test", draft)).status_code == 403
    draft.refresh_from_db()
    assert draft.state == MailingState.DRAFT


def test_user_text_is_escaped_everywhere():
    evil = mailing(subject="<script>alert(1)</script>")
    client = client_for(make_user("all", "send_mailing", "view_mailing_results", *COMPOSE))
    for page in (url("index"), url("overview", evil), url("preview", evil), url("send", evil)):
        html = client.get(page).content.decode()
        assert "<script>alert(1)</script>" not in html, page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html, page


def test_menu_shows_mailings_to_those_allowed():
    editor = client_for(make_user("editor", *COMPOSE))
    assert "Mailings" in editor.get(reverse("wagtailadmin_home")).content.decode()
    nobody = client_for(make_user("nobody"))
    assert "Mailings" not in nobody.get(reverse("wagtailadmin_home")).content.decode()


def test_cancel_is_offered_only_while_something_can_be_cancelled(
    django_capture_on_commit_callbacks,
):
    draft = mailing()
    client = client_for(make_user("pub", "send_mailing"))
    with django_capture_on_commit_callbacks(execute=True):
        client.post(url("send", draft), {"when": "now"})
    worker.process_outbox(time_budget=5)  # everything handed over
    assert url("cancel", draft) not in client.get(url("overview", draft)).content.decode()
    scheduled = mailing(subject="Later")
    client.post(url("send", scheduled), {"when": "later", "send_at": "2099-01-01 10:00"})
    assert url("cancel", scheduled) in client.get(url("overview", scheduled)).content.decode()


# ---- issue #15: what a composer can do with "Send a test", the sender and page bodies ----

NEWS = "News <news@example.com>"


def compose(client: Client, **fields: str):
    """Post the "Add mailing" form as Wagtail's page does."""
    data = {
        "subject": "Spring news",
        "from_email": "",
        "reply_to": "",
        "body": body_json("Hello {{ name }}"),
        "page": "",
        "audience": "members",
        "connector": "",
        **fields,
    }
    return client.post(url("add"), data)


def field_errors(response, name: str) -> list[str]:
    form = response.context["form"]
    return [str(e) for e in form.errors.get(name, [])]


def flashed(response) -> str:
    """The messages Wagtail shows on the page a redirect leads to."""
    return " ".join(str(m) for m in response.context["messages"])


def test_a_test_goes_only_to_the_composers_own_address():
    editor = client_for(make_user("editor", *COMPOSE))
    draft = mailing()
    response = editor.post(
        url("test", draft), {"to": "victim@example.org", "address": "victim@example.org"}
    )
    assert response.status_code == 302
    (sent,) = mail.outbox
    assert sent.to == ["editor@example.com"]
    assert sent.cc == [] and sent.bcc == []


def test_a_test_without_an_address_on_the_account_is_refused():
    user = make_user("editor", *COMPOSE)
    user.email = ""
    user.save()
    response = client_for(user).post(url("test", mailing()), follow=True)
    assert "your account has no email address" in flashed(response)
    assert mail.outbox == []


def test_a_test_to_an_address_with_a_problem_is_refused(settings):
    # Even where a site exempted the test's source from suppression.
    settings.WAGTAIL_MAILLOG = {
        **settings.WAGTAIL_MAILLOG,
        "UNSUPPRESSED_SOURCES": ["mailing_test"],
    }
    set_status([("editor@example.com", AddressStatus.UNSUBSCRIBED, "clicked unsubscribe")])
    editor = client_for(make_user("editor", *COMPOSE))
    response = editor.post(url("test", mailing()), follow=True)
    text = flashed(response)
    assert "The test was not sent" in text
    assert "Problem (unsubscribed)" in text
    assert mail.outbox == []
    assert not Recipient.objects.filter(address="editor@example.com").exists()


def test_a_test_obeys_suppression_even_at_the_last_moment(settings):
    """The test message itself is not exempt: the ``pre_send`` suppression blocks it."""
    from wagtail_maillog.mailings import sending

    settings.WAGTAIL_MAILLOG = {
        **settings.WAGTAIL_MAILLOG,
        "UNSUPPRESSED_SOURCES": ["mailing_test"],
    }
    user = make_user("editor", *COMPOSE)
    draft = mailing()
    body = sending.content.build(draft)
    message = sending._base_message(draft, body.subject, body.text, body.html, [user.email], True)
    set_status([("editor@example.com", AddressStatus.BOUNCED, "550")])  # after the check
    assert message.send() == 0
    assert mail.outbox == []
    assert Recipient.objects.get(address="editor@example.com").status == "blocked"


def test_from_is_one_of_the_senders_the_site_allows(settings):
    settings.WAGTAIL_MAILLOG = {**settings.WAGTAIL_MAILLOG, "MAILING_FROM_ADDRESSES": [NEWS]}
    editor = client_for(make_user("editor", *COMPOSE))
    page = editor.get(url("add")).content.decode()
    assert '<select name="from_email"' in page
    assert "Site default (site@example.com)" in page
    assert "News &lt;news@example.com&gt;" in page

    for sender in ("Boss <ceo@bank.example>", "ceo@bank.example", "Your Bank <news@example.com>"):
        response = compose(editor, from_email=sender)
        assert response.status_code == 200, sender
        assert "is not a sender this site allows" in field_errors(response, "from_email")[0]
    assert not Mailing.objects.exists()

    assert compose(editor, from_email=NEWS).status_code == 302
    assert Mailing.objects.get().from_email == NEWS
    editor.post(url("test", Mailing.objects.get()))
    (sent,) = mail.outbox
    assert sent.from_email == NEWS


def test_without_the_setting_only_the_default_sender(settings):
    editor = client_for(make_user("editor", *COMPOSE))
    response = compose(editor, from_email="other@example.com")
    assert "is not a sender this site allows" in field_errors(response, "from_email")[0]
    assert compose(editor, from_email="site@example.com").status_code == 302


def test_line_breaks_in_headers_are_refused(settings):
    settings.WAGTAIL_MAILLOG = {**settings.WAGTAIL_MAILLOG, "MAILING_FROM_ADDRESSES": [NEWS]}
    editor = client_for(make_user("editor", *COMPOSE))
    response = compose(
        editor,
        subject="Hello\r\nBcc: all@example.org",
        from_email=NEWS + "\r\nBcc: all@example.org",
        reply_to="help@example.com\n",
    )
    assert response.status_code == 200
    for name in ("subject", "from_email", "reply_to"):
        assert "control characters are not allowed" in " ".join(field_errors(response, name)), name
    response = compose(editor, subject="Tab\tand bell\x07")
    assert "control characters are not allowed" in field_errors(response, "subject")[0]
    assert not Mailing.objects.exists()


def test_a_draft_with_a_sender_no_longer_allowed_cannot_be_saved_tested_or_sent(
    settings, django_capture_on_commit_callbacks
):
    old = mailing(from_email="Boss <ceo@bank.example>")
    editor = client_for(make_user("editor", *COMPOSE))
    edit = editor.get(url("edit", old))
    assert "is not a sender this site allows" in field_errors(edit, "from_email")[0]
    assert "Boss &lt;ceo@bank.example&gt; (not allowed)" in edit.content.decode()
    saved = editor.post(
        url("edit", old),
        {
            "subject": old.subject,
            "from_email": old.from_email,
            "reply_to": "",
            "body": body_json("Hi"),
            "page": "",
            "audience": "members",
            "connector": "",
        },
    )
    assert saved.status_code == 200
    assert "is not a sender this site allows" in field_errors(saved, "from_email")[0]

    response = editor.post(url("test", old), follow=True)
    assert "is not one this site allows" in flashed(response)
    assert mail.outbox == []

    publisher = client_for(make_user("pub", "send_mailing"))
    response = publisher.get(url("send", old), follow=True)
    assert "This mailing cannot be sent" in flashed(response)
    with django_capture_on_commit_callbacks(execute=True):
        response = publisher.post(url("send", old), {"when": "now"})
    assert response["Location"] == url("overview", old)
    old.refresh_from_db()
    assert old.state == MailingState.DRAFT
    worker.process_outbox(time_budget=5)
    assert mail.outbox == []


def test_a_draft_with_a_line_break_in_its_subject_cannot_be_sent():
    old = mailing(subject="Hello\nBcc: all@example.org")
    publisher = client_for(make_user("pub", "send_mailing"))
    response = publisher.post(url("send", old), {"when": "now"}, follow=True)
    assert "line break" in flashed(response)
    old.refresh_from_db()
    assert old.state == MailingState.DRAFT


# ---- page bodies --------------------------------------------------------------------


@pytest.fixture
def pages():
    """The editor may edit the "Club" section; "Members only" in it has a password, and
    "Board" lies outside what the editor may touch."""
    from django.contrib.auth.models import Group, Permission
    from wagtail.models import GroupPagePermission, Page

    from tests.testapp.models import NewsPage

    root = Page.objects.get(depth=1)
    club = root.add_child(instance=NewsPage(title="Club", slug="club", body="<p>club</p>"))
    public = club.add_child(
        instance=NewsPage(title="Open day", slug="open-day", body="<p>open day text</p>")
    )
    private = club.add_child(
        instance=NewsPage(title="Members only", slug="members", body="<p>secret text</p>")
    )
    PageViewRestriction.objects.create(
        page=private, restriction_type=PageViewRestriction.PASSWORD, password="pw"
    )
    board = root.add_child(
        instance=NewsPage(title="Board", slug="board", body="<p>board minutes text</p>")
    )
    editors = Group.objects.create(name="Club editors")
    GroupPagePermission.objects.create(
        group=editors,
        page=club,
        permission=Permission.objects.get(
            content_type__app_label="wagtailcore", codename="change_page"
        ),
    )
    editor = make_user("editor", *COMPOSE, groups=(editors,))
    return {"club": club, "public": public, "private": private, "board": board, "editor": editor}


def test_only_pages_the_composer_may_see_and_that_are_public_can_be_the_body(pages):
    client = client_for(pages["editor"])
    for name, error in (
        ("private", "This page is private"),
        ("board", "You may not use this page"),
    ):
        response = compose(client, body=body_json(""), page=str(pages[name].pk))
        assert response.status_code == 200, name
        assert error in field_errors(response, "page")[0], name
    assert not Mailing.objects.exists()

    response = compose(client, body=body_json(""), page=str(pages["public"].pk))
    assert response.status_code == 302
    draft = Mailing.objects.get()
    assert client.get(url("preview", draft)).status_code == 200
    assert "open day text" in client.get(url("preview_html", draft)).content.decode()


def test_a_private_page_in_a_saved_draft_is_neither_shown_nor_mailed(
    pages, django_capture_on_commit_callbacks
):
    draft = mailing(page=pages["private"], body="")
    client = client_for(pages["editor"])
    edit = client.get(url("edit", draft))
    assert "This page is private" in field_errors(edit, "page")[0]

    preview = client.get(url("preview", draft), follow=True)
    assert "No preview: This page is private" in flashed(preview)
    assert "secret text" not in preview.content.decode()
    frame = client.get(url("preview_html", draft))
    assert frame.status_code == 403
    assert "secret text" not in frame.content.decode()

    test = client.post(url("test", draft), follow=True)
    assert "The test was not sent. This page is private" in flashed(test)
    assert mail.outbox == []


def test_a_page_outside_the_composers_permissions_is_not_shown(pages):
    draft = mailing(page=pages["board"], body="")
    client = client_for(pages["editor"])
    preview = client.get(url("preview", draft), follow=True)
    assert "You may not use this page" in flashed(preview)
    assert "board minutes" not in preview.content.decode()
    frame = client.get(url("preview_html", draft))
    assert frame.status_code == 403 and "board minutes" not in frame.content.decode()
    client.post(url("test", draft))
    assert mail.outbox == []


def test_a_page_that_became_private_after_saving_is_not_sent(
    pages, django_capture_on_commit_callbacks
):
    from django.contrib.auth.models import Group

    draft = mailing(page=pages["public"], body="")
    later = mailing(page=pages["public"], body="", subject="Later")
    publisher_user = make_user("pub", "send_mailing", groups=tuple(pages["editor"].groups.all()))
    publisher = client_for(publisher_user)
    publisher.post(url("send", later), {"when": "later", "send_at": "2099-01-01 10:00"})
    later.refresh_from_db()
    assert later.state == MailingState.SCHEDULED

    # The whole club section becomes members-only (a restriction the page inherits).
    restriction = PageViewRestriction.objects.create(
        page=pages["club"], restriction_type=PageViewRestriction.GROUPS
    )
    restriction.groups.add(Group.objects.create(name="Members"))

    response = publisher.post(url("send", draft), {"when": "now"}, follow=True)
    assert "This mailing cannot be sent. This page is private" in flashed(response)
    draft.refresh_from_db()
    assert draft.state == MailingState.DRAFT

    # The scheduled one fails when it starts, with the reason, and mails nobody.
    from wagtail_maillog.mailings import sending

    Mailing.objects.filter(pk=later.pk).update(state=MailingState.STARTING)
    with pytest.raises(content.Refused):
        sending.queue_mailing(later.pk)
    later.refresh_from_db()
    assert later.state == MailingState.FAILED
    assert "This page is private" in later.error
    worker.process_outbox(time_budget=5)
    assert mail.outbox == []


def test_the_body_page_chooser_offers_no_private_page(pages):
    from wagtail.models import Page

    from wagtail_maillog.mailings.forms import PAGE_CHOOSER_MARK

    client = client_for(pages["editor"])
    ours = {"user_perms": PAGE_CHOOSER_MARK}
    club = reverse("wagtailadmin_choose_page_child", args=[pages["club"].pk])
    html = client.get(club, ours).json()["html"]
    assert "Open day" in html
    assert "Members only" not in html
    root = reverse("wagtailadmin_choose_page_child", args=[Page.objects.get(depth=1).pk])
    html = client.get(root, ours).json()["html"]
    assert "Club" in html and "Board" not in html
    # Other choosers (links in rich text) are left as they were.
    assert "Members only" in client.get(club).json()["html"]


def test_a_refused_sender_is_escaped_in_messages_and_the_form():
    evil = mailing(from_email="<script>alert(1)</script>@example.com")
    client = client_for(make_user("all", "send_mailing", *COMPOSE))
    for response in (
        client.get(url("edit", evil)),
        client.post(url("test", evil), follow=True),
        client.get(url("send", evil), follow=True),
        client.get(url("preview", evil)),
    ):
        html = response.content.decode()
        assert "<script>alert(1)</script>" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert mail.outbox == []


# ---- issue #17: a mailing's state says what happened ----


@pytest.fixture
def held():
    """Mail stays in the outbox until the test runs the worker (no worker is woken)."""
    from django.core.cache import cache

    cache.set(worker.WAKE_KEY, 1, timeout=300)


def test_a_cancelled_schedule_says_when_and_by_whom_not_sent(settings):
    draft = mailing()
    publisher = make_user("pub", "send_mailing", "view_mailing_results")
    publisher.first_name = "Pia"
    publisher.save()
    client = client_for(publisher)
    client.post(url("send", draft), {"when": "later", "send_at": "2099-01-01 10:00"})
    client.post(url("cancel", draft))
    draft.refresh_from_db()
    assert draft.state == MailingState.CANCELLED
    assert draft.cancelled_by == publisher and draft.cancelled_at is not None
    page = client.get(url("overview", draft)).content.decode()
    assert "Sent at" not in page and "Sent by" not in page
    assert "Was scheduled for" in page and "Cancelled at" in page
    assert 'data-fact="cancelled-by">Pia' in page
    assert "Nothing: it had not started." in page
    assert 'data-busy="false"' in page


def test_a_mailing_cancelled_half_way_says_what_had_gone(
    settings, held, django_capture_on_commit_callbacks
):
    settings.WAGTAIL_MAILLOG["CONNECTORS"]["newsletter"]["MAILING"] = {"BATCH_SIZE": 1}
    draft = mailing()
    client = client_for(make_user("pub", "send_mailing", "view_mailing_results"))
    with django_capture_on_commit_callbacks(execute=True):
        client.post(url("send", draft), {"when": "now"})
    (first, *_rest) = worker.claim(1, "test-worker")  # one recipient goes out, then a cancel
    worker.deliver(first, "test-worker", worker.RunResult())
    client.post(url("cancel", draft))
    draft.refresh_from_db()
    assert draft.state == MailingState.CANCELLED and draft.started_at is not None
    page = client.get(url("overview", draft)).content.decode()
    assert "1 recipient had been handed to the ESP; the others were not sent." in page
    assert "Started at" in page and "Cancelled at" in page


def test_a_fully_handed_over_mailing_is_sent_and_the_page_stops_polling(
    held, django_capture_on_commit_callbacks
):
    from django.db.models import Max

    from wagtail_maillog.models import SendAttempt

    draft = mailing()
    client = client_for(make_user("pub", "send_mailing", "view_mailing_results"))
    with django_capture_on_commit_callbacks(execute=True):
        client.post(url("send", draft), {"when": "now"})
    waiting = client.get(url("progress", draft)).content.decode()
    assert 'data-busy="true"' in waiting  # recipients pending in the outbox
    assert "Sending" in waiting
    worker.process_outbox(time_budget=5)
    done = client.get(url("progress", draft)).content.decode()
    assert 'data-busy="false"' in done
    draft.refresh_from_db()
    assert draft.state == MailingState.SENT
    last = SendAttempt.objects.aggregate(last=Max("at"))["last"]
    assert draft.finished_at == last
    overview = client.get(url("overview", draft)).content.decode()
    assert 'data-fact="finished-at"' in overview and "Cancelled" not in overview


def test_the_every_minute_schedule_settles_a_sent_mailing_nobody_looks_at(
    held, django_capture_on_commit_callbacks
):
    from wagtail_maillog.mailings import sending

    draft = mailing()
    with django_capture_on_commit_callbacks(execute=True):
        sending.send(draft)
    worker.process_outbox(time_budget=5)
    draft.refresh_from_db()
    assert draft.state == MailingState.QUEUED  # nothing looked yet
    sending.start_due()
    draft.refresh_from_db()
    assert draft.state == MailingState.SENT and draft.finished_at is not None


def test_a_queued_recipient_keeps_the_page_polling(django_capture_on_commit_callbacks):
    """The ESP took it and its events are still to come: its count is about to move."""
    draft = mailing()
    client = client_for(make_user("pub", "send_mailing", "view_mailing_results"))
    with django_capture_on_commit_callbacks(execute=True):
        client.post(url("send", draft), {"when": "now"})
    worker.process_outbox(time_budget=5)
    Recipient.objects.filter(pk=Recipient.objects.order_by("pk").first().pk).update(status="queued")
    assert 'data-busy="true"' in client.get(url("progress", draft)).content.decode()


def test_a_mailing_none_of_whose_recipients_could_be_handed_over_is_failed(
    settings, held, django_capture_on_commit_callbacks
):
    from anymail.exceptions import AnymailAPIError

    from tests.esp import ScriptedBackend

    settings.WAGTAIL_MAILLOG = {
        "CONNECTORS": {"newsletter": {"BACKEND": "tests.esp.ScriptedBackend"}},
        "DEFAULT_CONNECTOR": "newsletter",
        "MAX_ATTEMPTS": 1,
    }
    ScriptedBackend.script = [AnymailAPIError("ESP down")] * 5
    draft = mailing()
    client = client_for(make_user("pub", "send_mailing", "view_mailing_results"))
    with django_capture_on_commit_callbacks(execute=True):
        client.post(url("send", draft), {"when": "now"})
    worker.process_outbox(time_budget=5)
    ScriptedBackend.script = []
    progress = client.get(url("progress", draft)).content.decode()
    draft.refresh_from_db()
    assert draft.state == MailingState.FAILED
    assert "No recipient could be handed over" in draft.error
    assert 'data-busy="false"' in progress and 'data-count-status="failed"' in progress


def test_interrupted_batches_show_only_to_who_may_see_the_outbox():
    """The mailing page's "Interrupted batches" (Send again / Drop lead to the outbox):
    a mailings editor without the mail log's view permission sees none of them."""
    from django.contrib.contenttypes.models import ContentType

    from wagtail_maillog.models import Message, OutboxItem, SendAttempt
    from wagtail_maillog.outbox.payload import dump

    mailing = Mailing.objects.create(
        subject="News", body="<p>Hi</p>", audience="members", state=MailingState.QUEUED
    )
    message = Message.objects.create(
        subject="News",
        content_type=ContentType.objects.get_for_model(Mailing),
        object_id=str(mailing.pk),
    )
    payload, mac = dump(mail.EmailMessage("News", "b", "s@example.com", ["a@example.com"]))
    OutboxItem.objects.create(
        message=message, connector="default", state="failed", payload=payload, payload_mac=mac
    )
    SendAttempt.objects.create(message=message, outcome="interrupted")
    url = reverse("wagtail_maillog_mailings:overview", args=[mailing.pk])

    editor = make_user("mailer", "view_mailing", "view_mailing_results")
    page = client_for(editor).get(url)
    assert page.status_code == 200 and "Results" in page.content.decode()
    assert "data-held-item" not in page.content.decode()
    viewer = make_user(
        "viewer", "view_mailing", "view_mailing_results", "view_message", "view_all_mail"
    )
    assert "data-held-item" in client_for(viewer).get(url).content.decode()
