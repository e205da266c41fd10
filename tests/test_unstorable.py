"""What a site sends may hold text a database refuses (NUL on PostgreSQL, lone UTF-16
surrogates everywhere, MariaDB's JSON check): the mail is still sent and recorded,
with U+FFFD in place of each refused character (wagtail_maillog/storable.py).
Webhook payloads get the same treatment: tests/test_hostile_webhooks.py."""

from __future__ import annotations

import pytest
from anymail.exceptions import AnymailAPIError
from django.core import mail
from django.core.mail import EmailMessage

from wagtail_maillog import storable
from wagtail_maillog.models import Message, Recipient, SendAttempt
from wagtail_maillog.recording import describe, record_failure, record_message

pytestmark = pytest.mark.django_db

REFUSED = ["\x00", "\udfff", "\ud800"]


def _message(where: str, bad: str) -> EmailMessage:
    msg = EmailMessage("Hi", "Body", "site@example.com", ["ann@example.com"])
    if where == "subject":
        msg.subject = f"s{bad}"
    elif where == "metadata":
        msg.metadata = {f"k{bad}": f"v{bad}", "deep": {"n": [f"x{bad}"]}}
    elif where == "headers":
        msg.extra_headers = {"X-Note": f"v{bad}"}
    elif where == "tags":
        msg.tags = [f"t{bad}"]
    elif where == "attachment":
        msg.attach(f"f{bad}.txt", "x", "text/plain")
    elif where == "name":
        msg.to = [f'"Ann{bad}" <ann@example.com>']
    elif where == "reply_to":
        msg.reply_to = [f"r{bad}@example.com"]
    return msg


def _texts(row: Message) -> str:
    recipient = row.recipients.get()
    return repr(
        [row.subject, row.metadata, row.headers, row.tags, row.attachment_names, row.reply_to]
        + [recipient.address, recipient.name]
    )


@pytest.mark.parametrize("bad", REFUSED, ids=["NUL", "low surrogate", "high surrogate"])
@pytest.mark.parametrize(
    "where", ["subject", "metadata", "headers", "tags", "attachment", "name", "reply_to"]
)
def test_refused_text_is_recorded_cleaned_and_the_mail_goes(where, bad):
    msg = _message(where, bad)
    pk = record_message(msg, esp_name="Test")
    texts = _texts(Message.objects.get(pk=pk))
    assert "\ufffd" in texts, texts
    assert bad not in texts


@pytest.mark.parametrize("where", ["subject", "metadata", "headers", "tags", "name"])
def test_a_send_with_nul_is_recorded_and_handed_over(where):
    """Through anymail's real send path (its test backend): the caller sees no error."""
    assert _message(where, "\x00").send() == 1
    assert len(mail.outbox) == 1
    row = Message.objects.get()
    assert Recipient.objects.get(message=row).status == "sent"
    assert "\ufffd" in _texts(row)


def test_an_esp_answer_with_refused_text_is_kept_cleaned():
    class Answer:
        status_code = 422
        headers: dict[str, str] = {}
        text = ""

        def json(self):
            return {"Message": "no\x00pe \udfff", "nested": [{"k\x00": "\ud800"}]}

    msg = _message("subject", "")
    record_message(msg, esp_name="Postmark")
    error = AnymailAPIError("refused \x00", status_code=422, response=Answer())
    record_failure(msg, error, "Postmark")
    attempt = SendAttempt.objects.get()
    assert attempt.response == {
        "status_code": 422,
        "body": {"Message": "no\ufffdpe \ufffd", "nested": [{"k\ufffd": "\ufffd"}]},
    }
    assert "\x00" not in attempt.error
    assert Recipient.objects.get().reason.startswith("Postmark refused the message (HTTP 422)")
    assert "no\ufffdpe" in Recipient.objects.get().reason


def test_describe_gives_storable_text():
    assert describe(ValueError("a\x00b\udfff")) == "ValueError: a\ufffdb\ufffd"


def test_json_nested_deeper_than_mariadb_takes_is_kept_as_text_there():
    deep: object = "leaf"
    for _ in range(40):
        deep = [deep]
    cleaned = storable.json_value({"d": deep}, None, max_depth=storable.MARIADB_JSON_DEPTH)
    inner = cleaned["d"]
    for _ in range(storable.MARIADB_JSON_DEPTH - 1):
        inner = inner[0]
    assert isinstance(inner, str) and inner.startswith("[[") and "leaf" in inner
    assert storable.json_value({"d": deep}, None) == {"d": deep}  # no limit asked
    assert storable.json_value({"n": float("nan")}, None) == {"n": "nan"}


@pytest.mark.parametrize("bad", REFUSED, ids=["NUL", "low surrogate", "high surrogate"])
def test_an_event_from_a_fetcher_with_refused_text_is_stored_cleaned_and_shown(bad, admin_client):
    """Events that do not come through a webhook view (a status fetcher, anymail's
    signal sent by another app) are cleaned as they are stored; the page shows them."""
    from tests.utils import send_with_ids, tracking_event
    from wagtail_maillog.events import ingest
    from wagtail_maillog.models import Event

    message = send_with_ids(["ann@example.com"], "esp-1")
    event = tracking_event(
        message_id="esp-1",
        recipient="ann@example.com",
        description=f"d{bad}",
        esp_event={"note": f"n{bad}", f"k{bad}": [f"x{bad}"]},
    )
    ingest([(event, "Postmark")])
    stored = Event.objects.get()
    assert stored.raw == {"note": "n\ufffd", "k\ufffd": ["x\ufffd"]}
    page = admin_client.get(f"/admin/maillog/{message.pk}/")
    assert page.status_code == 200
    assert "n\ufffd" in page.content.decode()
