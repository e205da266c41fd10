"""Resend sends what was sent: to each recipient as addressed, nobody else's address
shown, a mailing rendered again member by member, and a report that says who got
nothing.

Through the real paths: the admin's resend page and Wagtail's bulk action with
the Django test client, anymail's test backend (``mail.outbox``), the loopback
fake Postmark API (tests/fake_esp.py), the outbox backend and worker.
"""

from __future__ import annotations

import re
from email.utils import getaddresses
from html import unescape

import pytest
from django.core import mail, signing
from django.core.mail import EmailMessage
from django.utils.html import escape

from tests.testapp.models import Member
from tests.utils import client_for, make_user
from wagtail_maillog.addresses.health import set_status
from wagtail_maillog.mailings import audiences, sending, unsubscribe
from wagtail_maillog.models import Address, AddressStatus, Mailing, Message, Recipient
from wagtail_maillog.outbox import worker
from wagtail_maillog.status import Status

pytestmark = pytest.mark.django_db
pytest_plugins = ["tests.fake_esp"]

LOG = "/admin/maillog/"
BULK = "/admin/bulk/wagtail_maillog/recipient/resend/"
TEST_ESP = "anymail.backends.test.EmailBackend"


@pytest.fixture
def resender():
    return make_user("resender", "view_all_mail", "resend_message")


@pytest.fixture
def store_bodies(settings):
    """Ordinary mail is resent from its stored body: keep it (off by default)."""
    settings.WAGTAIL_MAILLOG = {**getattr(settings, "WAGTAIL_MAILLOG", {}), "STORE_BODY": True}


def flash(response) -> list[tuple[str, str]]:
    """The admin's messages after a redirect: (level, text)."""
    from django.contrib.messages import get_messages

    # Wagtail renders each message through a template: escaped HTML.
    return [
        (m.level_tag, unescape(str(m.message)).strip()) for m in get_messages(response.wsgi_request)
    ]


def box(page: str, recipient: Recipient) -> str:
    """The recipient's checkbox on the resend page."""
    return re.search(rf'<input[^>]*name="recipient" value="{recipient.pk}"[^>]*>', page).group(0)


def resend_page(client, message: Message, *recipients: Recipient):
    return client.post(
        f"{LOG}{message.pk}/resend/", {"recipient": [r.pk for r in recipients]}, follow=False
    )


def bulk(client, *recipients: Recipient):
    ids = "&".join(f"id={r.pk}" for r in recipients)
    return f"{BULK}?{ids}&next={LOG}"


# ---- a mailing ----------------------------------------------------------------


def _mailing_settings(settings, **mailing: object) -> None:
    spec = {"BACKEND": TEST_ESP, **({"MAILING": mailing} if mailing else {})}
    settings.WAGTAIL_MAILLOG = {
        **getattr(settings, "WAGTAIL_MAILLOG", {}),
        "CONNECTORS": {"newsletter": spec},
        "DEFAULT_CONNECTOR": "newsletter",
    }


ANN = 'Ann, the "first"'


def _sent_mailing(settings, capture, **mailing: object) -> Mailing:
    """A mailing sent for real as one batch (anymail's test backend fills merge data)."""
    _mailing_settings(settings, **mailing)
    people = [(ANN, "ann@example.com"), ("Bob <b>", "bob@example.com")]
    for name, address in people:
        Member.objects.create(name=name, email=address)
    set_status([(address, AddressStatus.CONFIRMED, "test") for _n, address in people])
    mailing = Mailing.objects.create(
        subject="News for {{ name }}",
        body="<p>Hello {{ name }},</p><p>read {{ email }}.</p>",
        audience="members",
    )
    with capture(execute=True):
        sending.send(mailing)
    worker.process_outbox(time_budget=10)
    mail.outbox.clear()
    return mailing


def test_a_batched_mailing_is_resent_to_each_member_on_their_own(
    settings, resender, django_capture_on_commit_callbacks, client
):
    mailing = _sent_mailing(settings, django_capture_on_commit_callbacks, BATCH_SIZE=10)
    (batch,) = Message.objects.filter(source="mailing")
    assert not batch.body_stored  # the default: the resend renders from the mailing
    rows = list(batch.recipients.order_by("address"))
    assert [r.address for r in rows] == ["ann@example.com", "bob@example.com"]

    web = client_for(resender)
    confirm = web.get(bulk(web, *rows)).content.decode()
    assert "ann@example.com" in confirm and "Yes, resend" in confirm
    response = web.post(bulk(web, *rows))
    assert response.status_code == 302
    assert flash(response) == [("success", "Sent again to 2 recipients.")]

    assert len(mail.outbox) == 2  # one message per member, never one to both
    by_address = {}
    for sent in mail.outbox:
        assert len(sent.to) == 1 and not sent.cc and not sent.bcc
        assert not getattr(sent, "merge_data", None)
        by_address[sent.to[0]] = sent
    ann = by_address["ann@example.com"]
    assert ann.subject == f"News for {ANN}"
    html = ann.alternatives[0][0]
    assert "{{" not in ann.subject + ann.body + html
    assert f"Hello {escape(ANN)}," in html
    assert f"Hello {ANN}," in ann.body
    assert "bob@example.com" not in ann.body + html + str(ann.message())
    bob = by_address["bob@example.com"]
    assert "Hello Bob &lt;b&gt;," in bob.alternatives[0][0]  # escaped in HTML, as sent

    # each has a working unsubscribe link of their own, and RFC 8058 headers
    link = re.search(r"http://testserver/mail/unsubscribe/([^/\s\"]+)/", html)
    checked = unsubscribe.check(link.group(1))
    assert checked.address.address == "ann@example.com" and checked.mailing == mailing
    one_click = ann.extra_headers["List-Unsubscribe"].strip("<>")
    assert ann.extra_headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    path = one_click.removeprefix("http://testserver")
    assert client.post(path, {"List-Unsubscribe": "One-Click"}).status_code == 200
    assert Address.objects.get(address="ann@example.com").status == AddressStatus.UNSUBSCRIBED
    assert Address.objects.get(address="bob@example.com").status == AddressStatus.CONFIRMED

    # the log: two new messages, one recipient each, both linked to the batch and the mailing
    resent = Message.objects.filter(resent_from=batch).order_by("pk")
    assert resent.count() == 2
    assert [m.recipients.get().address for m in resent] == [
        "ann@example.com",
        "bob@example.com",
    ]
    assert {m.related_object for m in resent} == {mailing}
    assert {m.created_by for m in resent} == {resender}


def test_one_member_of_a_mailing_from_the_message_page(
    settings, resender, django_capture_on_commit_callbacks
):
    _sent_mailing(settings, django_capture_on_commit_callbacks, BATCH_SIZE=10)
    batch = Message.objects.get(source="mailing")
    bob = batch.recipients.get(address="bob@example.com")
    web = client_for(resender)
    page = web.get(f"{LOG}{batch.pk}/resend/").content.decode()
    assert "each member you tick gets their own copy" in page
    response = resend_page(web, batch, bob)
    (sent,) = mail.outbox
    assert sent.to == ["bob@example.com"] and sent.subject == "News for Bob <b>"
    new = Message.objects.get(resent_from=batch)
    assert response["Location"] == f"{LOG}{new.pk}/"
    assert flash(response) == [("success", "Sent again to 1 recipient.")]


def test_a_member_no_longer_confirmed_gets_no_resend_of_the_mailing(
    settings, resender, django_capture_on_commit_callbacks
):
    _sent_mailing(settings, django_capture_on_commit_callbacks, BATCH_SIZE=10)
    set_status([("bob@example.com", AddressStatus.UNSUBSCRIBED, "test")])
    batch = Message.objects.get(source="mailing")
    rows = list(batch.recipients.order_by("address"))
    web = client_for(resender)

    page = web.get(f"{LOG}{batch.pk}/resend/").content.decode()
    assert "checked" in box(page, rows[0]) and "checked" not in box(page, rows[1])
    assert "Problem (unsubscribed)" in page

    response = resend_page(web, batch, *rows)  # ticked anyway
    assert [m.to for m in mail.outbox] == [["ann@example.com"]]
    ((level, text),) = flash(response)
    assert level == "warning"
    assert text == (
        "Sent again to 1 recipient. Not sent to 1 recipient because of the address's status: "
        "bob@example.com (Problem (unsubscribed))."
    )


class Listed(audiences.Audience):
    """A site's non-ORM audience: only ``entries()``."""

    key, label = "listed", "Listed"

    def entries(self, chunk: int):
        people = [("a@example.com", "A"), ("b@example.com", "B"), ("a@example.com", "A2")]
        for start in range(0, len(people), chunk):
            yield [audiences.Entry(a, n) for a, n in people[start : start + chunk]]


def test_names_for_a_resend_come_from_any_audience():
    """The first member of an address, as sending takes it; nobody for unknown ones."""
    assert Listed().names({"a@example.com", "x@example.com"}) == {"a@example.com": "A"}
    Member.objects.create(name="First", email=" Ann@Example.com")
    Member.objects.create(name="Second", email="ann@example.com")
    members = audiences.get("members")
    assert members.names(["ann@example.com", "x@example.com"]) == {"ann@example.com": "First"}


def test_a_mailing_that_was_deleted_cannot_be_resent(
    settings, resender, django_capture_on_commit_callbacks
):
    mailing = _sent_mailing(settings, django_capture_on_commit_callbacks, BATCH_SIZE=10)
    batch = Message.objects.get(source="mailing")
    mailing.delete()
    web = client_for(resender)
    assert "was deleted" in web.get(f"{LOG}{batch.pk}/resend/").content.decode()
    resend_page(web, batch, *batch.recipients.all())
    assert mail.outbox == [] and not Message.objects.filter(resent_from=batch).exists()


def test_a_page_mailing_whose_page_became_private_is_refused_not_a_crash(
    settings, resender, django_capture_on_commit_callbacks
):
    from wagtail.models import Page, PageViewRestriction

    from tests.browser_helpers import ensure_wagtail_root
    from tests.testapp.models import NewsPage

    _mailing_settings(settings, BATCH_SIZE=10)
    Member.objects.create(name="Ann", email="ann@example.com")
    set_status([("ann@example.com", AddressStatus.CONFIRMED, "test")])
    ensure_wagtail_root()
    page = Page.objects.get(depth=1).add_child(
        instance=NewsPage(title="News", slug="news-r", body="<p>Dear {{ name }}.</p>")
    )
    mailing = Mailing.objects.create(subject="News", page=page, audience="members")
    with django_capture_on_commit_callbacks(execute=True):
        sending.send(mailing)
    worker.process_outbox(time_budget=10)
    mail.outbox.clear()
    PageViewRestriction.objects.create(page=page, restriction_type="login")
    batch = Message.objects.get(source="mailing")
    row = batch.recipients.get()

    assert "This page is private" in client_for(resender).get(f"{LOG}{batch.pk}/").content.decode()
    response = resend_page(client_for(resender), batch, row)
    assert response.status_code == 302
    ((level, text),) = flash(response)
    assert level == "error" and "This page is private" in text
    web = client_for(resender)
    assert "You cannot resend these" in web.get(bulk(web, row)).content.decode()
    web.post(bulk(web, row))
    assert mail.outbox == [] and not Message.objects.filter(resent_from=batch).exists()


# ---- ordinary mail --------------------------------------------------------------

HOSTILE = [
    ("attacker@evil.example, Bob", "bob@example.com"),
    ("Smith, John", "john@example.com"),
    ("Søren Ærø", "soren@example.com"),
    ('Say "hi" \\ there', "quote@example.com"),
]


def test_display_names_are_quoted_so_they_add_nobody(settings, store_bodies, resender, fake_esp):
    """Through anymail's real Postmark backend into the loopback fake Postmark API."""
    settings.EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"
    settings.ANYMAIL = fake_esp.anymail_settings()
    from anymail.utils import EmailAddress

    msg = EmailMessage(
        "Minutes", "Body", "site@example.com", [EmailAddress(n, a).address for n, a in HOSTILE]
    )
    msg.send()
    original = Message.objects.get()
    assert sorted(original.recipients.values_list("name", flat=True)) == sorted(
        n for n, _a in HOSTILE
    )
    # A name that reached the log with a line break in it (an import, an old row)
    original.recipients.filter(address="john@example.com").update(
        name="Smith, John\r\nBcc: spy@evil.example"
    )

    response = resend_page(client_for(resender), original, *original.recipients.all())
    assert flash(response) == [("success", "Sent again to 4 recipients.")]
    request = fake_esp.requests_to("/email", "POST")[-1]
    sent_to = getaddresses([request.body["To"]])
    assert sorted(sent_to) == sorted(
        [
            *(pair for pair in HOSTILE if pair[1] != "john@example.com"),
            ("Smith, John Bcc: spy@evil.example", "john@example.com"),
        ]
    )
    assert "evil.example" not in request.body.get("Bcc", "") + request.body.get("Cc", "")
    new = Message.objects.get(resent_from=original)
    assert sorted(new.recipients.values_list("address", flat=True)) == sorted(
        a for _n, a in HOSTILE
    )


def test_bcc_recipients_stay_hidden(store_bodies, resender):
    msg = EmailMessage(
        "Board",
        "Body",
        "site@example.com",
        ["to@example.com"],
        bcc=["hidden@example.com"],
        cc=["copy@example.com"],
    )
    msg.send()
    original = Message.objects.get()
    mail.outbox.clear()
    resend_page(client_for(resender), original, *original.recipients.all())
    (sent,) = mail.outbox
    assert sent.to == ["to@example.com"] and sent.cc == ["copy@example.com"]
    assert sent.bcc == ["hidden@example.com"]
    assert "hidden@example.com" not in str(sent.message())  # in no header
    roles = dict(
        Message.objects.get(resent_from=original).recipients.values_list("address", "role")
    )
    assert roles == {"to@example.com": "to", "copy@example.com": "cc", "hidden@example.com": "bcc"}


def test_a_problem_address_is_not_ticked_and_the_report_names_it(store_bodies, resender):
    set_status([("gone@example.com", AddressStatus.BOUNCED, "test")])
    msg = EmailMessage("Receipt", "Body", "site@example.com", ["ok@example.com"])
    msg.send()
    original = Message.objects.get()
    # the address bounced since; the row was recorded before
    Recipient.objects.create(
        message=original, address="gone@example.com", role="to", status=Status.SENT
    )
    ok, gone = (
        original.recipients.get(address="ok@example.com"),
        original.recipients.get(address="gone@example.com"),
    )
    web = client_for(resender)
    page = web.get(f"{LOG}{original.pk}/resend/").content.decode()
    assert "checked" in box(page, ok) and "checked" not in box(page, gone)
    assert "Problem (bounced)" in page

    mail.outbox.clear()
    response = resend_page(web, original, ok, gone)  # the problem one ticked by hand
    (sent,) = mail.outbox
    assert sent.to == ["ok@example.com"]
    new = Message.objects.get(resent_from=original)
    assert new.recipients.get(address="gone@example.com").status == Status.BLOCKED
    assert flash(response) == [
        (
            "warning",
            "Sent again to 1 recipient. Not sent to 1 recipient because of the address's "
            "status: gone@example.com (Problem (bounced)).",
        )
    ]

    mail.outbox.clear()
    response = resend_page(client_for(resender), original, gone)  # a fresh message list
    assert mail.outbox == []
    assert flash(response) == [
        (
            "warning",
            "Nothing was sent. Not sent to 1 recipient because of the address's status: "
            "gone@example.com (Problem (bounced)).",
        )
    ]
    assert "The message was sent again" not in str(flash(response))


def test_the_bulk_action_leaves_problem_addresses_out(store_bodies, resender):
    set_status([("gone@example.com", AddressStatus.SPAM, "test")])
    EmailMessage("A", "Body", "site@example.com", ["ok@example.com"]).send()
    EmailMessage("B", "Body", "site@example.com", ["gone@example.com"]).send()
    rows = list(Recipient.objects.order_by("pk"))
    assert rows[1].status == Status.BLOCKED  # suppressed the first time too
    web = client_for(resender)
    confirm = web.get(bulk(web, *rows)).content.decode()
    held = re.search(r'<ul class="maillog-resend-held">(.*?)</ul>', confirm, re.S).group(1)
    assert "gone@example.com" in held and "Problem (spam)" in held
    listed = re.search(r'<ul class="maillog-resend-items">(.*?)</ul>', confirm, re.S).group(1)
    assert "ok@example.com" in listed and "gone@example.com" not in listed

    mail.outbox.clear()
    response = web.post(bulk(web, *rows))
    assert [m.to for m in mail.outbox] == [["ok@example.com"]]
    assert flash(response) == [("success", "Sent again to 1 recipient.")]
    assert not Message.objects.filter(subject="B", resent_from__isnull=False).exists()


def test_an_esp_failure_is_reported_as_one(settings, store_bodies, resender, fake_esp):
    settings.EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"
    settings.ANYMAIL = fake_esp.anymail_settings()
    EmailMessage("Receipt", "Body", "site@example.com", ["ok@example.com"]).send()
    original = Message.objects.get()
    fake_esp.fail_next(status=500, path="/email")
    response = resend_page(client_for(resender), original, original.recipients.get())
    ((level, text),) = flash(response)
    assert level == "error"
    assert text.startswith(
        "Nothing was sent. Sending failed for 1 recipient: AnymailRequestsAPIError"
    )
    new = Message.objects.get(resent_from=original)
    assert new.recipients.get().status == Status.FAILED


def test_through_the_outbox_the_report_says_queued_and_blocked(settings, resender):
    settings.EMAIL_BACKEND = "wagtail_maillog.outbox.backend.OutboxBackend"
    settings.WAGTAIL_MAILLOG = {
        **getattr(settings, "WAGTAIL_MAILLOG", {}),
        "STORE_BODY": True,
        "CONNECTORS": {"default": {"BACKEND": TEST_ESP}},
        "UNDO_SEND_SECONDS": 0,
    }
    set_status([("gone@example.com", AddressStatus.INVALID, "test")])
    EmailMessage("Receipt", "Body", "site@example.com", ["ok@example.com"]).send()
    original = Message.objects.get()
    Recipient.objects.create(
        message=original, address="gone@example.com", role="to", status=Status.SENT
    )
    response = resend_page(client_for(resender), original, *original.recipients.all())
    assert flash(response) == [
        (
            "warning",
            "Queued in the outbox to be sent again to 1 recipient. Not sent to 1 recipient "
            "because of the address's status: gone@example.com (Problem (invalid address)).",
        )
    ]
    worker.process_outbox(time_budget=10)
    new = Message.objects.get(resent_from=original)
    statuses = dict(new.recipients.values_list("address", "status"))
    assert statuses["gone@example.com"] == Status.BLOCKED  # as the report said
    assert statuses["ok@example.com"] != Status.BLOCKED


def test_a_body_whose_one_time_links_were_cut_is_not_resent(store_bodies, resender):
    link = "http://testserver/confirm/" + signing.dumps({"a": 1}) + "/"
    EmailMessage("Your link", f"Open {link}", "site@example.com", ["ok@example.com"]).send()
    original = Message.objects.get()
    assert link not in original.body_text  # cut when it was recorded
    web = client_for(resender)
    assert "One-time links were cut" in web.get(f"{LOG}{original.pk}/resend/").content.decode()
    mail.outbox.clear()
    resend_page(web, original, original.recipients.get())
    assert mail.outbox == []
