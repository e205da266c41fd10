"""anymail's pre_send/post_send signals fill the log (anymail's test backend)."""

from email.mime.image import MIMEImage

import pytest
from anymail.exceptions import AnymailAPIError, AnymailRecipientsRefused
from anymail.message import AnymailRecipientStatus
from django.contrib.auth.models import Group, User
from django.core import mail
from django.core.mail import EmailMessage, EmailMultiAlternatives, send_mail

from tests.test_webhooks import POSTMARK as POSTMARK_HOOK
from tests.test_webhooks import postmark
from tests.testapp.models import Invoice
from tests.utils import post_json
from wagtail_maillog import label, mail_context
from wagtail_maillog.models import Address, AddressStatus, Event, Message, Recipient, SendAttempt
from wagtail_maillog.status import Status

pytest_plugins = ["tests.fake_esp"]
pytestmark = pytest.mark.django_db


def test_plain_send_mail_is_recorded_with_each_recipient(settings):
    settings.WAGTAIL_MAILLOG = {"STORE_BODY": True}
    send_mail("Hello", "Text body", "Site <site@example.com>", ["Bob <Bob@Example.com>", "c@x.org"])

    message = Message.objects.get()
    assert message.subject == "Hello"
    assert message.from_email == "Site <site@example.com>"
    assert message.esp_name == "Test"
    assert message.source == "system"
    assert message.system_generated is True
    assert message.body_text == "Text body"
    rows = {r.address: r for r in message.recipients.all()}
    assert set(rows) == {"bob@example.com", "c@x.org"}
    assert rows["bob@example.com"].name == "Bob"
    assert all(r.status == Status.SENT for r in rows.values())
    assert all(r.esp_message_id == "0" for r in rows.values())  # test backend's id
    attempt = SendAttempt.objects.get()
    assert attempt.outcome == SendAttempt.Outcome.SENT and attempt.connector == "Test"


def test_cc_bcc_headers_tags_metadata_and_attachments(settings):
    settings.WAGTAIL_MAILLOG = {"STORE_BODY": True}
    msg = EmailMultiAlternatives(
        "Invoice 42",
        "See attached",
        "billing@example.com",
        ["a@example.com"],
        cc=["b@example.com"],
        bcc=["c@example.com"],
        reply_to=["help@example.com"],
        headers={"X-Priority": "1"},
    )
    msg.attach_alternative("<p>See <b>attached</b></p>", "text/html")
    msg.attach("invoice-42.pdf", b"%PDF-1.4", "application/pdf")
    image = MIMEImage(b"GIF89a", "gif")
    image.add_header("Content-Disposition", "inline", filename="logo.gif")
    msg.attach(image)
    msg.tags = ["invoice"]
    msg.metadata = {"customer": "17"}
    msg.send()

    message = Message.objects.get()
    assert {(r.address, r.role) for r in message.recipients.all()} == {
        ("a@example.com", "to"),
        ("b@example.com", "cc"),
        ("c@example.com", "bcc"),
    }
    assert message.importance == "high"
    assert message.reply_to == ["help@example.com"]
    assert message.headers == {"X-Priority": "1"}
    assert message.tags == ["invoice"] and message.metadata == {"customer": "17"}
    assert message.attachment_count == 2
    assert message.attachment_names == ["invoice-42.pdf", "logo.gif"]
    assert message.body_html == "<p>See <b>attached</b></p>"
    assert message.can_resend is False


def test_body_is_not_stored_when_the_setting_is_off(settings):
    settings.WAGTAIL_MAILLOG = {"STORE_BODY": False}
    send_mail("Secret", "Do not keep me", "a@example.com", ["b@example.com"])
    message = Message.objects.get()
    assert (message.body_text, message.body_html, message.body_stored) == ("", "", False)
    assert message.can_resend is False


def test_label_sets_source_related_object_user_and_team():
    invoice = Invoice.objects.create(number="2026-001")
    team = Group.objects.create(name="Accounting")
    user = User.objects.create_user("ann", "ann@example.com", "pw")
    user.groups.add(team)
    msg = EmailMessage("Your invoice", "Body", "a@example.com", ["cust@example.com"])
    label(msg, source="invoice", related=invoice, user=user)
    msg.send()

    message = Message.objects.get()
    assert message.source == "invoice"
    assert message.related_object == invoice
    assert message.related_label == "Invoice 2026-001"
    assert message.created_by == user and message.team == team
    assert message.system_generated is False


def test_mail_context_labels_everything_inside_and_the_message_label_wins():
    invoice = Invoice.objects.create(number="7")
    with mail_context(source="integration", related=invoice):
        send_mail("One", "b", "a@example.com", ["x@example.com"])
        msg = EmailMessage("Two", "b", "a@example.com", ["y@example.com"])
        label(msg, source="form")
        msg.send()
    send_mail("Three", "b", "a@example.com", ["z@example.com"])

    by_subject = {m.subject: m for m in Message.objects.all()}
    assert by_subject["One"].source == "integration"
    assert by_subject["Two"].source == "form"
    assert by_subject["Two"].related_object == invoice
    assert by_subject["Three"].source == "system" and by_subject["Three"].object_id == ""


def test_wagtail_password_reset_is_recorded_as_system_mail(client):
    User.objects.create_user("bob", "bob@example.com", "pw")
    response = client.post("/admin/password_reset/", {"email": "bob@example.com"})
    assert response.status_code == 302

    message = Message.objects.get()
    assert message.source == "password_reset"
    assert message.system_generated is True
    assert message.recipients.get().address == "bob@example.com"


def test_wagtail_notifications_are_system_mail_even_in_a_users_request():
    from wagtail.admin.mail import send_mail as wagtail_send_mail

    user = User.objects.create_user("mod", "mod@example.com", "pw")
    with mail_context(user=user):
        wagtail_send_mail("Page submitted", "Please review", ["mod@example.com"])
    message = Message.objects.get()
    assert message.source == "wagtail_notification"
    assert message.system_generated is True
    assert message.created_by == user


def test_mail_sent_in_a_signed_in_request_belongs_to_the_user(client):
    user = User.objects.create_user("eve", "eve@example.com", "pw")
    client.force_login(user)
    assert client.post("/send-test-mail/").status_code == 200
    message = Message.objects.get()
    assert message.created_by == user
    assert message.system_generated is False
    assert message.source == "system"


def test_esp_refusal_per_recipient_is_stored():
    msg = EmailMessage("Hi", "b", "a@example.com", ["ok@example.com", "bad@example.com"])
    msg.anymail_test_response = {
        "recipient_status": {
            "ok@example.com": AnymailRecipientStatus("id-1", "queued"),
            "bad@example.com": AnymailRecipientStatus("id-1", "invalid"),
        }
    }
    msg.send()
    statuses = dict(Recipient.objects.values_list("address", "status"))
    assert statuses == {"ok@example.com": Status.QUEUED, "bad@example.com": Status.INVALID}


def test_api_error_without_the_outbox_is_a_failed_attempt_and_still_raises():
    """No post_send comes; the failure is recorded all the same, and the caller is told."""
    msg = EmailMessage("Hi", "b", "a@example.com", ["a@example.com"])
    msg.anymail_test_response = AnymailAPIError("ESP down")
    with pytest.raises(AnymailAPIError):
        msg.send()
    recipient = Recipient.objects.get()
    assert recipient.status == Status.FAILED
    assert "ESP down" in recipient.reason
    attempt = SendAttempt.objects.get()
    assert attempt.outcome == SendAttempt.Outcome.FAILED
    assert "AnymailAPIError: ESP down" in attempt.error


def test_a_failed_send_retried_with_the_same_object_keeps_its_row():
    msg = EmailMessage("Hi", "b", "a@example.com", ["a@example.com"])
    msg.anymail_test_response = AnymailAPIError("ESP down")
    with pytest.raises(AnymailAPIError):
        msg.send()
    del msg.anymail_test_response
    msg.send()
    assert Message.objects.count() == 1
    assert Recipient.objects.get().status == Status.SENT
    outcomes = list(SendAttempt.objects.values_list("outcome", flat=True))
    assert outcomes == [SendAttempt.Outcome.FAILED, SendAttempt.Outcome.SENT]


def test_sending_a_sent_object_again_makes_a_new_row():
    msg = EmailMessage("Hi", "b", "a@example.com", ["a@example.com"])
    msg.send()
    first = Recipient.objects.get()
    msg.send()
    assert Message.objects.count() == 2
    first.refresh_from_db()
    assert first.esp_message_id == "0" and first.status == Status.SENT
    assert len(mail.outbox) == 2


def test_send_time_refusal_has_a_reason_and_is_announced(django_capture_on_commit_callbacks):
    from wagtail_maillog.signals import status_changed

    seen = []
    status_changed.connect(
        lambda sender, changes, **kw: seen.extend(changes), weak=False, dispatch_uid="test-announce"
    )
    try:
        msg = EmailMessage("Hi", "b", "a@example.com", ["bad@example.com"])
        msg.anymail_test_response = {
            "recipient_status": {"bad@example.com": AnymailRecipientStatus("id-9", "rejected")}
        }
        with (
            django_capture_on_commit_callbacks(execute=True),
            pytest.raises(AnymailRecipientsRefused),
        ):
            msg.send()
    finally:
        status_changed.disconnect(dispatch_uid="test-announce")
    recipient = Recipient.objects.get()
    assert recipient.status == Status.REJECTED
    assert "refused" in recipient.reason
    assert [(c.address, c.old, c.new) for c in seen] == [
        ("bad@example.com", Status.SENDING, Status.REJECTED)
    ]


def test_error_reports_to_admins_are_system_mail(settings):
    import logging

    from django.core.mail import mail_admins
    from django.utils.log import AdminEmailHandler

    settings.ADMINS = [("Ops", "ops@example.com")]
    user = User.objects.create_user("eve", "eve@example.com", "pw")
    with mail_context(user=user):
        handler = AdminEmailHandler()
        record = logging.LogRecord("django.request", logging.ERROR, __file__, 1, "Boom", (), None)
        handler.emit(record)
    message = Message.objects.get()
    assert message.source == "error_report" and message.system_generated is True
    assert mail_admins  # the same path Django uses for 500 reports


# ---- a failed hand-over without the outbox, through anymail's real Postmark backend ----

POSTMARK = "anymail.backends.postmark.EmailBackend"
NOT_A_SIGNATURE = {
    "ErrorCode": 400,
    "Message": "The 'From' address you supplied (nobody@example.com) is not a Sender "
    "Signature on your account. Please add and confirm this address in order to be able "
    "to use it in the 'From' field of your messages.",
}


def test_postmark_422_is_a_failed_attempt_with_its_status_and_message(fake_esp, settings):
    settings.EMAIL_BACKEND = POSTMARK
    settings.ANYMAIL = fake_esp.anymail_settings()
    fake_esp.fail_next(status=422, body=NOT_A_SIGNATURE, path="/email")
    with pytest.raises(AnymailAPIError) as raised:
        send_mail("Welcome", "Hello", "nobody@example.com", ["ann@example.com", "bo@example.com"])
    assert raised.value.status_code == 422  # the caller gets anymail's exception unchanged
    reasons = set(Recipient.objects.values_list("status", "reason"))
    assert len(reasons) == 1
    status, reason = reasons.pop()
    assert status == Status.FAILED
    assert "HTTP 422" in reason and "is not a Sender Signature" in reason
    attempt = SendAttempt.objects.get()
    assert attempt.outcome == SendAttempt.Outcome.FAILED
    assert attempt.connector == "Postmark"
    assert attempt.response == {"status_code": 422, "body": NOT_A_SIGNATURE}
    assert "422" in attempt.error


def test_an_unreachable_esp_is_a_failed_attempt_with_the_connection_error(fake_esp, settings):
    settings.EMAIL_BACKEND = POSTMARK
    url = fake_esp.postmark_api_url
    fake_esp.stop()  # nothing listens on that port any more: connection refused
    settings.ANYMAIL = {"POSTMARK_SERVER_TOKEN": "t", "POSTMARK_API_URL": url}
    with pytest.raises(AnymailAPIError):
        send_mail("Welcome", "Hello", "site@example.com", ["ann@example.com"])
    recipient = Recipient.objects.get()
    assert recipient.status == Status.FAILED
    assert "could not be reached" in recipient.reason
    assert "ConnectionError" in recipient.reason
    attempt = SendAttempt.objects.get()
    assert attempt.outcome == SendAttempt.Outcome.FAILED and attempt.response is None


def test_a_successful_send_costs_no_extra_query_for_the_failure_hook(
    fake_esp, settings, monkeypatch
):
    """The hook is a try/except: a send that succeeds runs the queries it ran without it."""
    from anymail.backends.base import AnymailBaseBackend
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    settings.EMAIL_BACKEND = POSTMARK
    settings.ANYMAIL = fake_esp.anymail_settings()
    send_mail("Warm-up", "Hello", "site@example.com", ["ann@example.com"])  # caches filled

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            send_mail("Welcome", "Hello", "site@example.com", ["ann@example.com"])
        return len(captured.captured_queries)

    hooked = queries()
    monkeypatch.setattr(AnymailBaseBackend, "_send", AnymailBaseBackend._send.__wrapped__)
    assert queries() == hooked


def test_a_send_cancelled_by_another_pre_send_receiver_does_not_stay_sending(settings):
    from anymail.exceptions import AnymailCancelSend
    from anymail.signals import pre_send

    def veto(sender, message, **kwargs):
        raise AnymailCancelSend("not today")

    pre_send.connect(veto, dispatch_uid="test-veto")
    try:
        assert EmailMessage("Hi", "b", "a@example.com", ["a@example.com"]).send() == 0
    finally:
        pre_send.disconnect(dispatch_uid="test-veto")
    recipient = Recipient.objects.get()
    assert recipient.status == Status.CANCELLED and "pre_send" in recipient.reason
    assert SendAttempt.objects.get().outcome == SendAttempt.Outcome.BLOCKED


def test_a_recipient_at_an_internationalised_domain_gets_its_events(
    fake_esp, settings, client, webhook_auth
):
    """anymail hands the ESP the domain's IDNA form (``xn--``), and the ESP reports that
    form back: it must find the recipient recorded as the sender wrote it."""
    settings.EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"
    settings.ANYMAIL = {**fake_esp.anymail_settings(), "WEBHOOK_SECRET": "hook:secret"}
    send_mail("Hi", "Body", "site@example.com", ["Søren <Soren@Bücher.example>"])
    assert [a.lower() for a in fake_esp.sent[-1].recipients] == ["soren@xn--bcher-kva.example"]
    recipient = Recipient.objects.get()
    assert recipient.address == "soren@bücher.example" and recipient.esp_message_id

    bounce = postmark("Bounce", recipient.esp_message_id, "soren@xn--bcher-kva.example")
    response = post_json(client, POSTMARK_HOOK, bounce | {"Type": "HardBounce"}, webhook_auth)
    assert response.status_code == 200
    recipient.refresh_from_db()
    assert recipient.status == Status.BOUNCED
    assert Event.objects.get().recipient_id == recipient.pk
    assert Address.objects.get().address == "soren@bücher.example"
    assert Address.objects.get().status == AddressStatus.BOUNCED
