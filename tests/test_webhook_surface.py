"""The webhook surface (issue 15): which URLs answer, what they take, what they tell the ESP.

- Only the ESPs the site uses answer; every other ``/anymail/<esp>/`` URL is a
  404 before anymail's view is built, so an ESP whose key or package is
  missing cannot be made to fail (and mail the admins) by anyone.
- A used ESP whose view cannot be built is a system check error.
- A body nested too deeply is a 400, a batch larger than
  ``MAX_EVENTS_PER_REQUEST`` a 413, before any event is recorded.
- The ESP's own API failing while anymail reads a webhook (Amazon SNS, S3,
  Resend) is a 502 with Retry-After, so the ESP retries; tested against real
  HTTP servers on 127.0.0.1.
- Bad auth and signatures are also logged to
  ``django.security.AnymailWebhookValidationFailure``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage as MimeMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from anymail.exceptions import AnymailImproperlyInstalled, _LazyError
from anymail.signals import inbound, tracking
from django.core.checks import run_checks
from django.urls import reverse

from tests.utils import post_json, send_with_ids
from wagtail_maillog.models import Event, Recipient
from wagtail_maillog.status import Status
from wagtail_maillog.webhooks import MAX_JSON_DEPTH, RETRY_AFTER_SECONDS, json_too_deep

pytestmark = pytest.mark.django_db

#: A URLconf without the webhooks (ROOT_URLCONF of the "not mounted" check test).
urlpatterns: list[Any] = []

POSTMARK = "/anymail/postmark/tracking/"
SPARKPOST = "/anymail/sparkpost/tracking/"
SES = "/anymail/amazon_ses/tracking/"
SES_INBOUND = "/anymail/amazon_ses/inbound/"
RESEND_INBOUND = "/anymail/resend/inbound/"
MAILGUN = "/anymail/mailgun/tracking/"
TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-events"
ALICE = "alice@example.com"
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"


def basic(credentials: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(credentials.encode()).decode()}


AUTH = basic("hook:secret")  # ANYMAIL["WEBHOOK_SECRET"] of tests/settings.py


def postmark_delivery(message_id: str, email: str = ALICE) -> dict[str, Any]:
    return {
        "RecordType": "Delivery",
        "ServerID": 23,
        "MessageStream": "outbound",
        "MessageID": message_id,
        "Recipient": email,
        "DeliveredAt": "2026-11-05T16:33:50Z",
        "Details": "250 OK",
        "Tag": "",
        "Metadata": {},
    }


def sparkpost_event(transmission_id: str, rcpt: str, n: int, meta: Any = None) -> dict[str, Any]:
    return {
        "msys": {
            "message_event": {
                "type": "delivery",
                "event_id": f"ev-{transmission_id}-{n}",
                "transmission_id": transmission_id,
                "rcpt_to": rcpt,
                "timestamp": str(1793982830 + n),
                "rcpt_meta": meta if meta is not None else {},
            }
        }
    }


def errors(caplog: Any) -> list[str]:
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.fixture
def derived(settings: Any) -> Any:
    """A site that declares no WEBHOOK_ESPS: its ESPs come from its email backends."""
    settings.WAGTAIL_MAILLOG = {}
    return settings


def no_boto3(monkeypatch: Any) -> None:
    """What anymail's amazon_ses webhook module holds when ``import boto3`` failed."""
    import anymail.webhooks.amazon_ses as ses

    missing = _LazyError(AnymailImproperlyInstalled(missing_package="boto3"))
    monkeypatch.setattr(ses, "_get_anymail_boto3_params", missing)
    monkeypatch.setattr(ses, "boto3", missing)


# ---------------------------------------------------------------------------
# Only the ESPs the site uses answer
# ---------------------------------------------------------------------------


def test_only_the_esp_of_email_backend_answers(client, derived, caplog):
    send_with_ids([ALICE], "pm-s-1")  # anymail's test backend, as if Postmark answered
    derived.EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"
    assert post_json(client, POSTMARK, postmark_delivery("pm-s-1"), AUTH).status_code == 200
    assert Recipient.objects.get().status == Status.DELIVERED
    body = [sparkpost_event("sp-s-1", ALICE, 1)]
    assert post_json(client, SPARKPOST, body, AUTH).status_code == 404
    assert client.head(SPARKPOST).status_code == 404
    assert client.options(SPARKPOST).status_code == 404
    assert Event.objects.count() == 1
    assert not errors(caplog)


def test_connectors_and_mailers_add_their_esps(client, derived):
    derived.EMAIL_BACKEND = "wagtail_maillog.outbox.backend.OutboxBackend"
    derived.WAGTAIL_MAILLOG = {
        "CONNECTORS": {
            "news": {"BACKEND": "anymail.backends.sparkpost.EmailBackend"},
            "sandbox": {"BACKEND": "wagtail_maillog.sandbox.SandboxBackend"},
            "typo": {"BACKEND": "anymail.backends.postmarc.EmailBackend"},
        }
    }
    assert post_json(client, SPARKPOST, [{"msys": {}}], AUTH).status_code == 200  # a ping
    assert post_json(client, POSTMARK, {}, AUTH).status_code == 404
    derived.MAILERS = {"default": {"BACKEND": "anymail.backends.postmark.EmailBackend"}}
    derived.WAGTAIL_MAILLOG = {}
    assert post_json(client, POSTMARK, postmark_delivery("x"), AUTH).status_code == 200
    assert post_json(client, SPARKPOST, [{"msys": {}}], AUTH).status_code == 404


def test_nothing_answers_for_a_site_without_an_anymail_esp(client, derived):
    """The sandbox ESP emits its events itself: it has no webhook."""
    derived.EMAIL_BACKEND = "wagtail_maillog.sandbox.SandboxBackend"
    for url in (POSTMARK, SPARKPOST, SES, "/anymail/mandrill/", RESEND_INBOUND):
        assert client.post(url, data="{}", content_type="application/json").status_code == 404


@pytest.mark.parametrize(
    "url, setting",
    [
        (MAILGUN, "MAILGUN_WEBHOOK_SIGNING_KEY"),
        ("/anymail/mailersend/tracking/", "MAILERSEND_SIGNING_SECRET"),
        ("/anymail/mandrill/", "MANDRILL_WEBHOOK_KEY"),
        ("/anymail/postal/tracking/", "POSTAL_WEBHOOK_KEY"),
        ("/anymail/unisender_go/tracking/", "UNISENDER_GO_API_KEY"),
        (SES, None),
    ],
)
def test_an_unused_esp_that_cannot_be_built_is_a_404_not_a_500(
    client, derived, caplog, monkeypatch, url, setting
):
    """The attack: anonymous POSTs to the URL of an ESP the site does not use, whose
    key (or boto3) is missing, were 500s that each mailed the admins."""
    derived.EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"
    derived.ANYMAIL = {k: v for k, v in derived.ANYMAIL.items() if k != setting}
    no_boto3(monkeypatch)
    client.raise_request_exception = False
    for _ in range(3):
        assert client.post(url, data="{}", content_type="application/json").status_code == 404
    assert not errors(caplog)
    # The same URL, once the site uses that ESP: its view is built, and fails.
    derived.WAGTAIL_MAILLOG = {"WEBHOOK_ESPS": "all"}
    assert client.post(url, data="{}", content_type="application/json").status_code == 500


def test_webhook_esps_setting_names_aliases_and_all(client, settings):
    settings.WAGTAIL_MAILLOG = {"WEBHOOK_ESPS": ["Brevo"]}
    for url in ("/anymail/brevo/tracking/", "/anymail/sendinblue/tracking/"):
        assert client.head(url).status_code == 200
    assert client.head(POSTMARK).status_code == 404
    settings.WAGTAIL_MAILLOG = {"WEBHOOK_ESPS": ["Amazon SES", "postmark/"]}
    assert client.head(POSTMARK).status_code == 200
    assert client.head(SES).status_code == 200
    assert client.head(SPARKPOST).status_code == 404
    settings.WAGTAIL_MAILLOG = {"WEBHOOK_ESPS": "all"}
    assert client.head(SPARKPOST).status_code == 200
    settings.WAGTAIL_MAILLOG = {"WEBHOOK_ESPS": []}
    assert client.head(POSTMARK).status_code == 404


def test_url_names_stay_reversible_whether_served_or_not(settings):
    settings.WAGTAIL_MAILLOG = {"WEBHOOK_ESPS": ["postmark"]}
    assert reverse("anymail:postmark_tracking_webhook") == POSTMARK
    assert reverse("anymail:sparkpost_tracking_webhook") == SPARKPOST
    assert reverse("anymail:mandrill_webhook") == "/anymail/mandrill/"


def test_an_inbound_url_that_is_not_configured_is_a_404(client, settings, caplog):
    """MailerSend inbound needs MAILERSEND_INBOUND_SECRET: a site that sends through
    MailerSend but receives no mail has none, and its inbound URL is not there."""
    settings.WAGTAIL_MAILLOG = {"WEBHOOK_ESPS": ["mailersend"]}
    client.raise_request_exception = False
    response = client.post("/anymail/mailersend/inbound/", data="{}", content_type=JSON)
    assert response.status_code == 404
    assert not errors(caplog)


# ---------------------------------------------------------------------------
# System checks
# ---------------------------------------------------------------------------


def check_ids(prefix: str = "wagtail_maillog.") -> list[Any]:
    return [m for m in run_checks() if m.id and m.id.startswith(prefix)]


def by_id(messages: list[Any], check_id: str) -> list[str]:
    return [m.msg for m in messages if m.id == check_id]


@pytest.mark.parametrize(
    "esps, setting, named",
    [
        (["mailgun"], "MAILGUN_WEBHOOK_SIGNING_KEY", "mailgun"),
        (["mailersend"], "MAILERSEND_SIGNING_SECRET", "mailersend"),
        (["mandrill"], "MANDRILL_WEBHOOK_KEY", "mandrill"),  # read only when a POST comes
        (["unisender_go"], "UNISENDER_GO_API_KEY", "unisender_go"),
    ],
)
def test_a_used_esp_without_its_key_is_a_check_error(settings, esps, setting, named):
    settings.WAGTAIL_MAILLOG = {"WEBHOOK_ESPS": esps}
    assert not by_id(check_ids(), "wagtail_maillog.E004")
    settings.ANYMAIL = {k: v for k, v in settings.ANYMAIL.items() if k != setting}
    found = by_id(check_ids(), "wagtail_maillog.E004")
    assert len(found) == 1 and named in found[0], found


def test_a_used_esp_without_its_package_is_a_check_error(settings, monkeypatch):
    settings.WAGTAIL_MAILLOG = {}
    settings.EMAIL_BACKEND = "anymail.backends.amazon_ses.EmailBackend"
    assert not by_id(check_ids(), "wagtail_maillog.E004")
    no_boto3(monkeypatch)
    found = by_id(check_ids(), "wagtail_maillog.E004")
    assert len(found) == 1 and "amazon_ses" in found[0] and "boto3" in found[0], found


def test_unused_or_unmounted_esps_need_no_key(settings, monkeypatch):
    settings.ANYMAIL = {"WEBHOOK_SECRET": "hook:secret"}  # no ESP's key at all
    no_boto3(monkeypatch)
    settings.WAGTAIL_MAILLOG = {}
    settings.EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"
    assert not check_ids()
    settings.WAGTAIL_MAILLOG = {"WEBHOOK_ESPS": "all"}
    assert len(by_id(check_ids(), "wagtail_maillog.E004")) >= 5
    settings.ROOT_URLCONF = "tests.test_webhook_surface"  # webhooks not mounted
    assert not by_id(check_ids(), "wagtail_maillog.E004")


def test_unknown_names_in_webhook_esps_are_a_check_error(settings):
    settings.WAGTAIL_MAILLOG = {"WEBHOOK_ESPS": ["postmark", "postmarc"]}
    found = by_id(check_ids(), "wagtail_maillog.E005")
    assert len(found) == 1 and "'postmarc'" in found[0] and "'postmark'" not in found[0]
    settings.WAGTAIL_MAILLOG = {"WEBHOOK_ESPS": 5}
    assert by_id(check_ids(), "wagtail_maillog.E005")
    settings.WAGTAIL_MAILLOG = {"WEBHOOK_ESPS": ["all"]}
    assert not by_id(check_ids(), "wagtail_maillog.E005")


def test_missing_webhook_secret_warns_for_the_esps_that_rely_on_it(settings):
    settings.ANYMAIL = {k: v for k, v in settings.ANYMAIL.items() if k != "WEBHOOK_SECRET"}
    settings.WAGTAIL_MAILLOG = {"WEBHOOK_ESPS": ["mailgun", "mailersend"]}  # both sign
    assert not by_id(check_ids(), "wagtail_maillog.W001")
    settings.WAGTAIL_MAILLOG = {"WEBHOOK_ESPS": ["mailgun", "postmark", "sparkpost"]}
    found = by_id(check_ids(), "wagtail_maillog.W001")
    assert len(found) == 1 and "postmark, sparkpost" in found[0] and "mailgun" not in found[0]


# ---------------------------------------------------------------------------
# Deep nesting and large batches
# ---------------------------------------------------------------------------


def nested(depth: int) -> str:
    """JSON text of objects and lists ``depth`` levels deep (built as text: Python's
    json module cannot write what is deeper than its recursion limit)."""
    pairs = depth // 2
    text = '{"k":[' * pairs + "1" + "]}" * pairs
    return "[" + text + "]" if depth % 2 else text


def test_json_depth_is_read_without_parsing():
    assert not json_too_deep(nested(MAX_JSON_DEPTH).encode())
    assert json_too_deep(nested(MAX_JSON_DEPTH + 1).encode())
    assert not json_too_deep(json.dumps({"text": "[]" * 500}).encode())  # inside a string
    assert not json_too_deep(json.dumps({"Message": nested(MAX_JSON_DEPTH)}).encode())
    assert json_too_deep(json.dumps({"Message": nested(MAX_JSON_DEPTH + 1)}).encode())
    assert not json_too_deep(('["]]]]]",' + nested(99) + "]").encode())
    assert json_too_deep(('["]]]]]",' + nested(100) + "]").encode())
    assert json_too_deep(('["\\"]]]]",' + nested(100) + "]").encode())  # escaped quote


@pytest.mark.parametrize("depth", [1_000, 5_000, 100_000])
def test_a_body_nested_deeply_is_a_400_not_a_500(client, caplog, depth):
    """Found by the attack: 1,000-5,000 levels raised RecursionError in the guard (500)."""
    send_with_ids([ALICE], "sp-deep")
    client.raise_request_exception = False
    deep = json.dumps([sparkpost_event("sp-deep", ALICE, 1, meta="@")])
    deep = deep.replace('"@"', nested(depth))
    response = client.post(SPARKPOST, data=deep, content_type=JSON, **AUTH)
    assert response.status_code == 400
    assert response.content == b"Webhook payload nested too deeply."
    bare = "[" * depth + "]" * depth
    assert client.post(SPARKPOST, data=bare, content_type=JSON, **AUTH).status_code == 400
    assert not Event.objects.exists()
    assert not errors(caplog)


def test_a_form_field_nested_deeply_is_a_400(client, caplog):
    """Mandrill posts its events as JSON in a form field, signed."""
    url = "/anymail/mandrill/"
    events = nested(3_000)
    signed = f"http://hook:secret@testserver{url}mandrill_events{events}"
    key = b"mandrill-test-webhook-key"  # ANYMAIL["MANDRILL_WEBHOOK_KEY"] of tests/settings.py
    signature = base64.b64encode(hmac.new(key, signed.encode(), hashlib.sha1).digest()).decode()
    client.raise_request_exception = False
    body = urlencode({"mandrill_events": events})
    response = client.post(url, body, FORM, HTTP_X_MANDRILL_SIGNATURE=signature, **AUTH)
    assert response.status_code == 400
    assert response.content == b"Webhook payload nested too deeply."
    assert not errors(caplog)


@pytest.mark.parametrize("depth, status", [(50, 200), (900, 400), (30_000, 400)])
def test_json_nested_inside_an_sns_message_counts_too(client, caplog, settings, depth, status):
    """SNS carries the SES event as a JSON string, which anymail parses itself: 900
    levels were stored on Python 3.13 and a RecursionError on 3.11."""
    settings.ANYMAIL = settings.ANYMAIL | {"AMAZON_SES_AUTO_CONFIRM_SNS_SUBSCRIPTIONS": False}
    send_with_ids([ALICE], "ses-deep")
    client.raise_request_exception = False
    ses_event = {
        "eventType": "Delivery",
        "mail": {"messageId": "ses-deep", "destination": [ALICE], "tags": "@"},
        "delivery": {"recipients": [ALICE], "smtpResponse": "250 OK"},
    }
    message = json.dumps(ses_event).replace('"@"', nested(depth))
    response = post_sns(client, SES, "Notification", Message=message)
    assert response.status_code == status, response.content[:200]
    if status == 400:
        assert response.content == b"Webhook payload nested too deeply."
    assert Event.objects.count() == (status == 200)
    assert not errors(caplog)


def test_metadata_nested_within_the_bound_is_stored(client, webhook_auth):
    send_with_ids([ALICE], "sp-meta")
    body = [sparkpost_event("sp-meta", ALICE, 1, meta=json.loads(nested(MAX_JSON_DEPTH - 4)))]
    text = json.dumps(body).encode()  # exactly MAX_JSON_DEPTH levels
    assert json_too_deep(text, MAX_JSON_DEPTH - 1) and not json_too_deep(text)
    assert post_json(client, SPARKPOST, body, webhook_auth).status_code == 200
    assert Recipient.objects.get().status == Status.DELIVERED


@pytest.fixture
def signals_sent() -> Iterator[list[Any]]:
    """Every event anymail's view sends through its signal (what our receiver would record)."""
    sent: list[Any] = []

    def receiver(sender: Any, event: Any, esp_name: str, **kwargs: Any) -> None:
        sent.append(event)

    tracking.connect(receiver, dispatch_uid="test_webhook_surface")
    yield sent
    tracking.disconnect(dispatch_uid="test_webhook_surface")


def test_a_batch_over_the_limit_is_a_413_before_any_event_is_recorded(
    client, settings, caplog, signals_sent
):
    settings.WAGTAIL_MAILLOG = settings.WAGTAIL_MAILLOG | {"MAX_EVENTS_PER_REQUEST": 10}
    send_with_ids([f"r{i}@example.com" for i in range(11)], "sp-batch")
    batch = [sparkpost_event("sp-batch", f"r{i}@example.com", i) for i in range(11)]
    response = post_json(client, SPARKPOST, batch, AUTH)
    assert response.status_code == 413
    assert response.content == b"Too many events in one request."
    assert signals_sent == [] and not Event.objects.exists()
    assert not errors(caplog)
    assert post_json(client, SPARKPOST, batch[:10], AUTH).status_code == 200
    assert len(signals_sent) == 10 and Event.objects.count() == 10


def test_the_default_limit_takes_the_largest_esp_batches(client, settings, signals_sent):
    """SparkPost and Mandrill post up to ~1,000 events, Brevo 500: taken. The attack's
    34,637 events in one 2.5 MiB POST: refused before a single signal."""
    send_with_ids([f"r{i}@example.com" for i in range(1_000)], "sp-big")
    batch = [sparkpost_event("sp-big", f"r{i}@example.com", i) for i in range(1_000)]
    assert post_json(client, SPARKPOST, batch, AUTH).status_code == 200
    assert Event.objects.count() == 1_000
    signals_sent.clear()
    flood = [sparkpost_event("sp-flood", f"f{i}@x.io", i) for i in range(34_637)]
    body = json.dumps(flood, separators=(",", ":"))
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = len(body) + 1
    response = client.post(SPARKPOST, data=body, content_type=JSON, **AUTH)
    assert response.status_code == 413
    assert signals_sent == [] and Event.objects.count() == 1_000


# ---------------------------------------------------------------------------
# The ESP's own API failing while anymail reads the webhook
# ---------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    body: bytes = b""
    content_type: str = "application/xml"


@dataclass
class LoopbackApi:
    """A real HTTP server on 127.0.0.1 that answers each request with ``answer(request)``."""

    answer: Callable[[dict[str, Any]], Answer]
    requests: list[dict[str, Any]] = field(default_factory=list)

    def __enter__(self) -> LoopbackApi:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self.handle_any()

            def do_POST(self) -> None:
                self.handle_any()

            def handle_any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                parts = urlsplit(self.path)
                request = {
                    "method": self.command,
                    "path": parts.path,
                    "query": parse_qs(parts.query),
                    "headers": dict(self.headers.items()),
                    "body": self.rfile.read(length) if length else b"",
                }
                api.requests.append(request)
                answer = api.answer(request)
                self.send_response(answer.status)
                self.send_header("Content-Type", answer.content_type)
                self.send_header("Content-Length", str(len(answer.body)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(answer.body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


def closed_port_url() -> str:
    """An address on 127.0.0.1 where nothing listens (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def aws_settings(settings: Any, url: str) -> None:
    """anymail's boto3 clients (SNS, S3) talk to ``url``, with one attempt each."""
    settings.ANYMAIL = settings.ANYMAIL | {
        "AMAZON_SES_AUTO_CONFIRM_SNS_SUBSCRIPTIONS": True,
        "AMAZON_SES_SESSION_PARAMS": {
            "aws_access_key_id": "AKIDTEST",
            "aws_secret_access_key": "test-secret",
            "region_name": "us-east-1",
        },
        "AMAZON_SES_CLIENT_PARAMS": {
            "endpoint_url": url,
            "config": {
                "retries": {"mode": "standard", "total_max_attempts": 1},
                "s3": {"addressing_style": "path"},
                "connect_timeout": 2,
                "read_timeout": 5,
            },
        },
    }


def post_sns(client: Any, url: str, sns_type: str, **fields: Any) -> Any:
    message = {
        "Type": sns_type,
        "MessageId": f"sns-{sns_type}-1",
        "TopicArn": TOPIC,
        "Timestamp": "2026-11-05T16:33:50.000Z",
        "SignatureVersion": "1",
    } | fields
    headers = {
        "HTTP_X_AMZ_SNS_MESSAGE_TYPE": sns_type,
        "HTTP_X_AMZ_SNS_MESSAGE_ID": message["MessageId"],
    }
    return client.post(url, data=json.dumps(message), content_type="text/plain", **AUTH, **headers)


def confirm_subscription(client: Any) -> Any:
    return post_sns(
        client,
        SES,
        "SubscriptionConfirmation",
        Token="token-1",
        Message="You have chosen to subscribe to the topic.",
        SubscribeURL="https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription",
    )


SNS_OK = b"""<ConfirmSubscriptionResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/">
<ConfirmSubscriptionResult><SubscriptionArn>arn:aws:sns:us-east-1:123456789012:ses-events:1
</SubscriptionArn></ConfirmSubscriptionResult>
<ResponseMetadata><RequestId>req-1</RequestId></ResponseMetadata></ConfirmSubscriptionResponse>"""


def aws_error(code: str, kind: str = "Sender") -> bytes:
    return (
        '<ErrorResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><Error>'
        f"<Type>{kind}</Type><Code>{code}</Code><Message>{code}</Message></Error>"
        "<RequestId>req-2</RequestId></ErrorResponse>"
    ).encode()


def assert_retry_later(response: Any) -> None:
    assert response.status_code == 502, response.content[:300]
    assert response["Retry-After"] == str(RETRY_AFTER_SECONDS)


def test_sns_subscription_confirmation_when_aws_fails_is_retried(client, settings, caplog):
    """SNS takes any 4xx as delivered: a 400 here never confirms the subscription."""
    with LoopbackApi(lambda r: Answer(500, aws_error("InternalFailure", "Receiver"))) as aws:
        aws_settings(settings, aws.url)
        assert_retry_later(confirm_subscription(client))
        (call,) = aws.requests
        form = parse_qs(call["body"].decode())
        assert form["Action"] == ["ConfirmSubscription"] and form["Token"] == ["token-1"]
        aws.answer = lambda r: Answer(200, SNS_OK)  # AWS is back: SNS's retry confirms
        assert confirm_subscription(client).status_code == 200
        aws.answer = lambda r: Answer(400, aws_error("InvalidParameter"))  # a bad token
        assert confirm_subscription(client).status_code == 400
    aws_settings(settings, closed_port_url())  # AWS unreachable
    assert_retry_later(confirm_subscription(client))
    assert not Event.objects.exists()


def raw_mime(subject: str) -> bytes:
    message = MimeMessage()
    message["From"] = "sender@example.net"
    message["To"] = "inbox@example.com"
    message["Subject"] = subject
    message.set_content("Hello")
    return message.as_bytes()


def post_s3_inbound(client: Any) -> Any:
    ses_event = {
        "notificationType": "Received",
        "mail": {
            "timestamp": "2026-11-05T16:33:50.000Z",
            "source": "sender@example.net",
            "messageId": "inbound-1",
            "destination": ["inbox@example.com"],
        },
        "receipt": {
            "recipients": ["inbox@example.com"],
            "action": {"type": "S3", "bucketName": "mail-in", "objectKey": "inbound-1"},
        },
    }
    return post_sns(client, SES_INBOUND, "Notification", Message=json.dumps(ses_event))


def test_s3_download_of_inbound_mail_when_s3_fails_is_retried(client, settings):
    received: list[Any] = []

    def on_inbound(sender: Any, event: Any, esp_name: str, **kwargs: Any) -> None:
        received.append(event.message["Subject"])

    inbound.connect(on_inbound, dispatch_uid="test_webhook_surface_s3")
    try:
        with LoopbackApi(lambda r: Answer(503, b"<Error><Code>SlowDown</Code></Error>")) as s3:
            aws_settings(settings, s3.url)
            assert_retry_later(post_s3_inbound(client))
            assert s3.requests[0]["path"] == "/mail-in/inbound-1"
            s3.answer = lambda r: Answer(404, b"<Error><Code>NoSuchKey</Code></Error>")
            assert post_s3_inbound(client).status_code == 400  # no such mail: bad input
            s3.answer = lambda r: Answer(200, raw_mime("Hi there"), "message/rfc822")
            assert post_s3_inbound(client).status_code == 200
        aws_settings(settings, closed_port_url())
        assert_retry_later(post_s3_inbound(client))
    finally:
        inbound.disconnect(dispatch_uid="test_webhook_surface_s3")
    assert received == ["Hi there"]


def post_resend_inbound(client: Any) -> Any:
    payload = {
        "type": "email.received",
        "created_at": "2026-11-05T16:33:50.000Z",
        "data": {"email_id": "in-1", "to": ["inbox@example.com"]},
    }
    return client.post(
        RESEND_INBOUND, data=json.dumps(payload), content_type=JSON, HTTP_SVIX_ID="msg_1", **AUTH
    )


def test_resend_inbound_fetch_when_resend_fails_is_retried(client, settings):
    email = {
        "from": "sender@example.net",
        "to": ["inbox@example.com"],
        "subject": "Hi",
        "text": "Hello",
        "headers": {},
        "attachments": [],
    }
    with LoopbackApi(lambda r: Answer(503, b'{"message": "down"}', JSON)) as resend:
        settings.ANYMAIL = settings.ANYMAIL | {
            "RESEND_API_KEY": "re_test",
            "RESEND_API_URL": resend.url + "/",
        }
        assert_retry_later(post_resend_inbound(client))
        call = resend.requests[0]
        assert call["path"] == "/emails/receiving/in-1"
        assert call["headers"]["Authorization"] == "Bearer re_test"
        resend.answer = lambda r: Answer(429, b'{"message": "slow down"}', JSON)
        assert_retry_later(post_resend_inbound(client))
        resend.answer = lambda r: Answer(404, b'{"message": "not found"}', JSON)
        assert post_resend_inbound(client).status_code == 400
        resend.answer = lambda r: Answer(200, json.dumps(email).encode(), JSON)
        assert post_resend_inbound(client).status_code == 200
    settings.ANYMAIL = settings.ANYMAIL | {"RESEND_API_URL": closed_port_url() + "/"}
    assert_retry_later(post_resend_inbound(client))


# ---------------------------------------------------------------------------
# Validation failures reach Django's security logger
# ---------------------------------------------------------------------------


def test_bad_auth_and_signatures_are_logged_to_the_security_logger(client, caplog):
    caplog.set_level(logging.WARNING)
    client.raise_request_exception = False
    wrong = basic("hook:wrong")
    assert post_json(client, POSTMARK, postmark_delivery("pm-x"), wrong).status_code == 400
    mailgun = {"signature": {"timestamp": "1", "token": "t", "signature": "bad"}}
    assert post_json(client, MAILGUN, mailgun, AUTH).status_code == 400
    security = [
        r for r in caplog.records if r.name == "django.security.AnymailWebhookValidationFailure"
    ]
    assert len(security) == 2
    assert all(r.levelno == logging.WARNING and r.status_code == 400 for r in security)
    assert "basic auth" in security[0].getMessage()
    assert "signature" in security[1].getMessage().lower()
    assert not errors(caplog)
    assert not Event.objects.exists()
