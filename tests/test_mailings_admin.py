"""The Mailings admin pages: compose, preview, test, send, results, and who may do which."""

from __future__ import annotations

import json

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse

from tests.testapp.models import Member
from tests.utils import client_for, denied, make_user
from wagtail_maillog.addresses.health import set_status
from wagtail_maillog.models import AddressStatus, Mailing, MailingState
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
