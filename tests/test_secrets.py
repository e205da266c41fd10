"""No secret becomes readable in the log: password resets, confirmation and
unsubscribe links (docs/reliability.md, "Security").

The attack these tests replay: an editor who may view their team's mail asks
Wagtail's "forgotten password" form for the superuser's address while signed
in, then opens the mail log to read the reset link.
"""

from __future__ import annotations

import base64
import io
import json
import re
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.core import mail
from django.core.mail import EmailMessage, EmailMultiAlternatives, send_mail
from django.core.management import call_command
from django.urls import reverse

from tests.settings import WEBHOOK_ESPS
from tests.test_mailings import connectors, draft, send_now
from tests.testapp.models import Member
from tests.utils import client_for, make_user, send_with_ids, tracking_event
from wagtail_maillog import label
from wagtail_maillog.addresses.confirmation import send_requests
from wagtail_maillog.addresses.health import set_status
from wagtail_maillog.events import ingest
from wagtail_maillog.log.access import visible_messages
from wagtail_maillog.mailings import sending
from wagtail_maillog.models import AddressStatus, Event, Message
from wagtail_maillog.outbox import worker
from wagtail_maillog.redaction import REDACTED, redact

pytestmark = pytest.mark.django_db

#: Django's reset token, as it appears in the link: "<base 36 time>-<32 hex>".
RESET_TOKEN = re.compile(r"/([0-9a-z]{1,13}-[0-9a-f]{32})/")


def _detail(message: Message) -> str:
    return reverse("wagtail_maillog:detail", args=[message.pk])


@pytest.fixture
def store_bodies(settings):
    settings.WAGTAIL_MAILLOG = {"STORE_BODY": True}


@pytest.fixture
def team():
    return Group.objects.create(name="Support team")


def test_a_reset_asked_by_a_signed_in_editor_is_not_their_teams_mail(store_bodies, team):
    editor = make_user("emma", "view_message", groups=(team,))
    colleague = make_user("jonas", "view_message", groups=(team,))
    admin = User.objects.create_superuser("admin", "admin@example.com", "pw")

    response = client_for(editor).post("/admin/password_reset/", {"email": "admin@example.com"})
    assert response.status_code == 302
    token = RESET_TOKEN.search(mail.outbox[-1].body).group(1)

    message = Message.objects.get()
    assert message.source == "password_reset" and message.system_generated is True
    assert (message.created_by, message.team) == (None, None)
    assert message.related_object == admin  # it belongs to the account it is about
    assert (message.body_stored, message.body_text, message.body_html) == (False, "", "")
    for user in (editor, colleague):
        assert not visible_messages(user).exists()
        page = client_for(user).get(_detail(message))
        assert token not in page.content.decode()
    page = client_for(admin).get(_detail(message))
    assert page.status_code == 200 and token not in page.content.decode()
    assert "carries a credential" in page.content.decode()  # why it cannot be resent


def test_a_password_reset_is_never_stored_even_when_labelled_to_be(store_bodies):
    User.objects.create_user("bob", "bob@example.com", "pw")
    with pytest.MonkeyPatch.context() as patch:
        from django.contrib.auth.forms import PasswordResetForm

        send = PasswordResetForm.send_mail

        def labelled(self, *args, **kwargs):  # a site that insists on keeping bodies
            from wagtail_maillog import mail_context

            with mail_context(store_body=True, source="account"):
                return send(self, *args, **kwargs)

        patch.setattr(PasswordResetForm, "send_mail", labelled)
        form = PasswordResetForm({"email": "bob@example.com"})
        assert form.is_valid()
        form.save(
            domain_override="www.example.com",
            email_template_name="wagtailadmin/account/password_reset/email.txt",
            subject_template_name="wagtailadmin/account/password_reset/email_subject.txt",
        )
    message = Message.objects.get()
    assert message.body_stored is False and message.body_text == ""
    assert message.related_object == User.objects.get(username="bob")


def test_mail_from_a_login_required_view_is_not_a_password_reset(client, team):
    editor = make_user("emma", "view_message", groups=(team,))
    client.force_login(editor)
    assert client.get("/send-mail-signed-in/").content == b"sent"

    message = Message.objects.get()
    assert message.source == "system"
    assert message.created_by == editor and message.team == team
    assert message.system_generated is False


def test_bodies_are_not_stored_by_default():
    send_mail("Hello", "A body", "site@example.com", ["bob@example.com"])
    message = Message.objects.get()
    assert (message.body_stored, message.body_text) == (False, "")


def test_a_confirmation_link_cannot_be_read_by_staff(store_bodies, team):
    staff = make_user("emma", "view_message", "view_all_mail", groups=(team,))
    Member.objects.create(name='Ann "Nan" Lee', email="ann@example.com")
    assert send_requests(["ann@example.com"], user=staff) == 1
    sent = mail.outbox[-1]
    link = re.search(r"https?://\S+/mail/confirm/\S+/", sent.body).group(0)

    message = Message.objects.get(source="confirmation")
    assert message.body_stored is False and message.body_text == message.body_html == ""
    page = client_for(staff).get(_detail(message))
    assert page.status_code == 200 and link.rsplit("/", 2)[1] not in page.content.decode()
    # the text part is plain text: the member's name as written, not HTML-escaped
    assert 'Ann "Nan" Lee' in sent.body and "&quot;" not in sent.body


def test_sites_name_more_sensitive_mail(settings):
    settings.WAGTAIL_MAILLOG = {"STORE_BODY": True, "SENSITIVE_SOURCES": ["login_code"]}
    coded = EmailMessage("Your code", "Code 123456", "site@example.com", ["a@example.com"])
    label(coded, source="login_code")
    coded.send()
    marked = EmailMessage("Your key", "Key abc", "site@example.com", ["b@example.com"])
    label(marked, sensitive=True)
    marked.send()
    send_mail("News", "Hello", "site@example.com", ["c@example.com"])

    stored = dict(Message.objects.values_list("subject", "body_text"))
    assert stored == {"Your code": "", "Your key": "", "News": "Hello"}


def test_one_time_links_are_cut_from_stored_bodies_and_headers(settings):
    settings.WAGTAIL_MAILLOG = {
        "STORE_BODY": True,
        "REDACT_PATTERNS": [r"(?<=[?&]code=)\w+"],
    }
    signed = "eyJhIjoxMiwibSI6M30:1xa3ye:mV45adcwoLoqq7-twHQuQ7H3_BHbuwhaY-GK-jd9sKs"
    reset = "https://www.example.com/reset/MQ/cz7k0e-0123456789abcdef0123456789abcdef/"
    msg = EmailMultiAlternatives(
        "Links",
        f"Reset: {reset}\nLeave: https://www.example.com/mail/unsubscribe/{signed}/\n"
        "Sign in: https://www.example.com/login?code=s3cr3t&next=/",
        "site@example.com",
        ["a@example.com"],
        headers={"List-Unsubscribe": f"<https://www.example.com/mail/unsubscribe/{signed}/>"},
    )
    msg.attach_alternative(f'<a href="{reset}">Reset</a>', "text/html")
    msg.send()

    message = Message.objects.get()
    stored = message.body_text + message.body_html + json.dumps(message.headers)
    for secret in (signed, "cz7k0e-0123456789abcdef0123456789abcdef", "s3cr3t", "/MQ/"):
        assert secret not in stored
    assert f"/mail/unsubscribe/{REDACTED}/" in message.headers["List-Unsubscribe"]
    assert "next=/" in message.body_text  # only the token goes


def test_a_mailings_unsubscribe_links_are_not_stored(settings, django_capture_on_commit_callbacks):
    connectors(settings, backend="django.core.mail.backends.locmem.EmailBackend")
    settings.WAGTAIL_MAILLOG["STORE_BODY"] = True
    member = Member.objects.create(name="Ann", email="ann@example.com")
    set_status([(member.email, AddressStatus.CONFIRMED, "test")])
    send_now(draft(), django_capture_on_commit_callbacks)
    worker.process_outbox(time_budget=10)

    sent = mail.outbox[-1]
    token = re.search(r"/mail/unsubscribe/([^/\s\"]+)/", sent.body).group(1)
    assert token in sent.extra_headers["List-Unsubscribe"]
    message = Message.objects.get(source="mailing")
    assert message.body_stored is True and "Hello Ann" in message.body_html
    stored = message.body_text + message.body_html + json.dumps(message.headers)
    assert token not in stored and REDACTED in message.headers["List-Unsubscribe"]


def test_a_click_on_a_token_link_is_stored_without_the_token():
    send_with_ids(["ann@example.com"], "esp-1")
    url = "https://www.example.com/admin/password_reset/confirm/MQ/cz7k0e-0123456789abcdef0123456789abcdef/"
    ingest(
        [
            (
                tracking_event(
                    event_type="clicked",
                    click_url=url,
                    esp_event={"RecordType": "Click", "OriginalLink": url},
                ),
                "Postmark",
            )
        ]
    )
    event = Event.objects.get()
    assert "cz7k0e" not in event.click_url and "cz7k0e" not in json.dumps(event.raw)
    assert event.click_url.startswith("https://www.example.com/admin/password_reset/confirm/")


def test_scrub_cleans_rows_written_before(store_bodies):
    signed = "eyJhIjoxMiwibSI6M30:1xa3ye:mV45adcwoLoqq7-twHQuQ7H3_BHbuwhaY-GK-jd9sKs"
    reset = Message.objects.create(
        subject="Reset", source="password_reset", body_stored=True, body_text="secret link"
    )
    news = Message.objects.create(
        subject="News",
        source="mailing",
        body_stored=True,
        body_html=f'<a href="https://x.example/mail/unsubscribe/{signed}/">Leave</a>',
        headers={"List-Unsubscribe": f"<https://x.example/mail/unsubscribe/{signed}/one-click/>"},
    )
    plain = Message.objects.create(subject="Plain", body_stored=True, body_text="Hello")
    url = f"https://x.example/mail/confirm/{signed}/"
    Event.objects.create(
        esp_name="Postmark",
        event_type="clicked",
        dedupe_key="k1",
        click_url=url,
        raw={"OriginalLink": url},
    )
    # Before migration 0021, only a click's payload was cleaned: not a bounce's content.
    Event.objects.create(
        esp_name="Postmark",
        event_type="deferred",
        dedupe_key="k2",
        description=f"Bounced: {url}",
        raw={"Type": "Transient", "Content": f"Confirm: {url}"},
    )

    call_command("maillog_scrub", stdout=io.StringIO())

    reset.refresh_from_db(), news.refresh_from_db(), plain.refresh_from_db()
    assert (reset.body_stored, reset.body_text) == (False, "")
    assert signed not in news.body_html + json.dumps(news.headers)
    assert (plain.body_stored, plain.body_text) == (True, "Hello")
    for event in Event.objects.all():
        assert signed not in event.click_url + event.description + json.dumps(event.raw)
    assert Event.objects.get(dedupe_key="k2").raw["Content"] == f"Confirm: {redact(url)}"


def test_display_names_are_stored_as_people_write_them():
    send_mail(
        "Hej", "b", "site@example.com", ["=?utf-8?q?S=C3=B8ren_=C3=86r=C3=B8?= <s@example.dk>"]
    )
    assert Message.objects.get().recipients.get().name == "Søren Ærø"


def test_redaction_leaves_ordinary_text_alone():
    text = "See https://www.example.com/news/2026/?utm_source=mail&x=1 — Note: 10:30 at hall"
    assert redact(text) == text


def _webhook(client: Any, esp: str, payload: dict[str, Any], **headers: str) -> None:
    auth = "Basic " + base64.b64encode(b"hook:secret").decode()
    response = client.post(
        f"/anymail/{esp}/tracking/",
        data=json.dumps(payload),
        content_type="application/json",
        HTTP_AUTHORIZATION=auth,
        **headers,
    )
    assert response.status_code == 200, response.content


def test_the_copy_of_a_mailing_an_esp_sends_back_shows_no_unsubscribe_token(
    settings, client, team, django_capture_on_commit_callbacks
):
    """Amazon SES's event publishing sends the message's headers with every event: a
    teammate of the sender reads the page, not any member's unsubscribe link."""
    connectors(settings, backend="django.core.mail.backends.locmem.EmailBackend")
    settings.WAGTAIL_MAILLOG["WEBHOOK_ESPS"] = WEBHOOK_ESPS
    settings.ANYMAIL = settings.ANYMAIL | {"AMAZON_SES_AUTO_CONFIRM_SNS_SUBSCRIPTIONS": False}
    sender = make_user("jonas", "view_message", groups=(team,))
    reader = make_user("emma", "view_message", groups=(team,))
    member = Member.objects.create(name="Ann", email="ann@example.com")
    set_status([(member.email, AddressStatus.CONFIRMED, "test")])
    with django_capture_on_commit_callbacks(execute=True):
        sending.send(draft(), user=sender)
    worker.process_outbox(time_budget=10)
    header = mail.outbox[-1].extra_headers["List-Unsubscribe"]
    token = re.search(r"/mail/unsubscribe/([^/\s\"]+)/", header).group(1)
    message = Message.objects.get(source="mailing")
    message.recipients.update(esp_message_id="ses-1")
    notification = {
        "eventType": "Delivery",
        "mail": {
            "messageId": "ses-1",
            "destination": ["ann@example.com"],
            "headers": [{"name": "List-Unsubscribe", "value": header}],
        },
        "delivery": {"recipients": ["ann@example.com"], "smtpResponse": "250 2.0.0 OK"},
    }
    sns = {
        "Type": "Notification",
        "MessageId": "sns-1",
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:ses-events",
        "Timestamp": "2026-11-05T16:33:50.000Z",
        "Message": json.dumps(notification),
    }
    _webhook(
        client,
        "amazon_ses",
        sns,
        HTTP_X_AMZ_SNS_MESSAGE_TYPE="Notification",
        HTTP_X_AMZ_SNS_MESSAGE_ID="sns-1",
    )
    event = Event.objects.get()
    assert event.recipient.message == message and event.event_type == "delivered"
    page = client_for(reader).get(_detail(message)).content.decode()
    assert "Raw ESP payloads" in page and REDACTED in page
    assert token not in page and token not in json.dumps(event.raw)


def test_a_bounce_with_the_message_shows_no_confirmation_link(client, team):
    """Postmark's bounce webhook with "Include bounce content" carries the bounced
    message: a temporary bounce of a confirmation request keeps its link valid."""
    moderator = make_user("mod", "view_message", "manage_addresses", groups=(team,))
    reader = make_user("emma", "view_message", groups=(team,))
    send_requests(["member@example.com"], user=moderator)
    sent = mail.outbox[-1]
    token = re.search(r"/mail/confirm/([^/\s]+)/", sent.body).group(1)
    message = Message.objects.get(source="confirmation")
    message.recipients.update(esp_message_id="pm-confirm-1")
    bounce = {
        "RecordType": "Bounce",
        "ID": 42,
        "Type": "Transient",
        "TypeCode": 2,
        "MessageID": "pm-confirm-1",
        "Description": "Mailbox full, retrying",
        "Details": f"452 4.2.2 mailbox full; message was: {sent.body}",
        "Email": "member@example.com",
        "BouncedAt": "2026-11-05T16:33:54Z",
        "Content": f"Subject: Delayed Mail\r\n\r\n--- original message ---\r\n{sent.body}",
    }
    _webhook(client, "postmark", bounce)
    event = Event.objects.get()
    assert event.event_type == "deferred" and event.recipient.message == message
    page = client_for(reader).get(_detail(message)).content.decode()
    assert "original message" in page
    assert token not in page
    assert token not in json.dumps(event.raw) + event.description + event.mta_response
