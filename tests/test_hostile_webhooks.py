"""Hostile and failed webhooks (issue 8, points 1 and 3), at every anymail tracking URL.

Property tests (hypothesis) post random, truncated, oversized, wrongly typed and
wrongly authenticated bodies to each tracking webhook anymail ships, through
our guard: the answer is always a 4xx (never a 5xx, never a 200 for garbage),
nothing is written, and nothing is logged at ERROR level. Bodies are signed
where the ESP signs its webhooks, so anymail's parsers, not only its
signature checks, get the garbage.

The database going away during a webhook answers 503 with Retry-After, keeps
nothing of the batch, and the same POST replayed later stores it once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import re
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import pytest
from anymail.signals import inbound
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from django.conf import settings as django_settings
from django.db import OperationalError, connection, transaction
from django.http import QueryDict
from django.test import override_settings
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.utils import send_with_ids
from wagtail_maillog.models import Event, Message, Recipient
from wagtail_maillog.status import Status
from wagtail_maillog.webhooks import RETRY_AFTER_SECONDS

pytestmark = pytest.mark.django_db

AUTH = "hook:secret"  # ANYMAIL["WEBHOOK_SECRET"] of tests/settings.py
MAILGUN_KEY = "mailgun-test-signing-key"
MAILERSEND_SECRET = "mailersend-test-signing-secret"
MANDRILL_KEY = "mandrill-test-webhook-key"
UNISENDER_GO_KEY = "unisender-go-test-api-key"

# Postal signs with RSA; its public key goes into the settings (see the fixture below).
_POSTAL_PRIVATE = rsa.generate_private_key(public_exponent=65537, key_size=1024)
POSTAL_PUBLIC_KEY = base64.b64encode(
    _POSTAL_PRIVATE.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
).decode()

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
ALICE, BOB = "alice@example.com", "bob@example.com"
STAMP = 1793982830  # 2026-11-05T16:33:50Z


def basic(credentials: str) -> str:
    return "Basic " + base64.b64encode(credentials.encode()).decode()


# ---------------------------------------------------------------------------
# The ESPs: a valid delivery payload and how each one signs its body
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Esp:
    """One anymail tracking URL, with a valid payload and the ESP's signature."""

    name: str
    url: str
    esp_id: str  # the ESP message id of the mail the tests send
    valid: Callable[[str, list[str]], Any]  # (esp id, addresses) -> payload data
    batches: bool = False  # one payload may carry several events
    content_type: str = JSON
    # Structured data -> (body, extra request headers), signed as the ESP signs.
    finish: Callable[[Esp, Any], tuple[bytes, dict[str, str]]] = field(
        default=lambda esp, data: (json.dumps(data).encode(), {})
    )
    # A raw body (truncated, not JSON, ...) -> headers: signed where the
    # signature is outside the body; else it stays unsigned.
    sign_raw: Callable[[Esp, bytes], dict[str, str]] = field(default=lambda esp, body: {})

    def __str__(self) -> str:
        return self.url

    @property
    def orphan_id(self) -> str:
        """An ESP message id of the same form that no sent mail has."""
        if self.esp_id.isdigit():
            return "9" + self.esp_id
        return "<x" + self.esp_id[1:] if self.esp_id.startswith("<") else "x" + self.esp_id


def _hmac256(key: str, body: bytes) -> str:
    return hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


def _mailgun_finish(esp: Esp, data: Any) -> tuple[bytes, dict[str, str]]:
    if isinstance(data, dict):
        token = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:50]
        signature = hmac.new(
            MAILGUN_KEY.encode(), f"{STAMP}{token}".encode(), hashlib.sha256
        ).hexdigest()
        data = {"signature": {"timestamp": str(STAMP), "token": token, "signature": signature}} | {
            k: v for k, v in data.items() if k != "signature"
        }
    return json.dumps(data).encode(), {}


def _mailersend_sign(esp: Esp, body: bytes) -> dict[str, str]:
    return {"HTTP_SIGNATURE": _hmac256(MAILERSEND_SECRET, body)}


def _postal_sign(esp: Esp, body: bytes) -> dict[str, str]:
    signature = _POSTAL_PRIVATE.sign(body, padding.PKCS1v15(), hashes.SHA1())
    return {"HTTP_X_POSTAL_SIGNATURE": base64.b64encode(signature).decode()}


def _signed_json(sign: Callable[[Esp, bytes], dict[str, str]]):
    def finish(esp: Esp, data: Any) -> tuple[bytes, dict[str, str]]:
        body = json.dumps(data).encode()
        return body, sign(esp, body)

    return finish


def _mandrill_sign(esp: Esp, body: bytes) -> dict[str, str]:
    # Mandrill signs the URL (with the basic auth in it) and the sorted POST params.
    params = QueryDict(body, encoding="utf-8").dict()
    signed = f"http://{AUTH}@testserver{esp.url}" + "".join(k + params[k] for k in sorted(params))
    digest = hmac.new(MANDRILL_KEY.encode(), signed.encode(), hashlib.sha1).digest()
    return {"HTTP_X_MANDRILL_SIGNATURE": base64.b64encode(digest).decode()}


def _mandrill_finish(esp: Esp, data: Any) -> tuple[bytes, dict[str, str]]:
    body = urlencode({"mandrill_events": json.dumps(data)}).encode()
    return body, _mandrill_sign(esp, body)


def _unisender_finish(esp: Esp, data: Any) -> tuple[bytes, dict[str, str]]:
    # "auth" is the MD5 of the body with the API key in its place.
    if not isinstance(data, dict):
        return json.dumps(data).encode(), {}
    template = json.dumps({k: v for k, v in data.items() if k != "auth"} | {"auth": "@AUTH@"})
    auth = hashlib.md5(template.replace("@AUTH@", UNISENDER_GO_KEY).encode()).hexdigest()
    return template.replace("@AUTH@", auth).encode(), {}


def _sns_headers(data: Any) -> dict[str, str]:
    """SNS repeats the message's Type and MessageId in headers, which anymail compares."""
    headers = {}
    if isinstance(data, dict):
        if isinstance(data.get("Type"), str):
            headers["HTTP_X_AMZ_SNS_MESSAGE_TYPE"] = data["Type"]
        if isinstance(data.get("MessageId"), str):
            headers["HTTP_X_AMZ_SNS_MESSAGE_ID"] = data["MessageId"]
    return headers


def _ses_finish(esp: Esp, data: Any) -> tuple[bytes, dict[str, str]]:
    if isinstance(data, dict) and isinstance(data.get("Message"), dict | list):
        data = data | {"Message": json.dumps(data["Message"])}  # SNS nests JSON as text
    return json.dumps(data).encode(), _sns_headers(data)


def _ses_sign_raw(esp: Esp, body: bytes) -> dict[str, str]:
    try:
        return _sns_headers(json.loads(body))
    except ValueError:
        return {}


def _postmark(esp_id: str, to: list[str]) -> Any:
    return {
        "RecordType": "Delivery",
        "ServerID": 23,
        "MessageStream": "outbound",
        "MessageID": esp_id,
        "Recipient": to[0],
        "DeliveredAt": "2026-11-05T16:33:50Z",
        "Details": "250 2.0.0 OK",
        "Tag": "welcome",
        "Metadata": {},
    }


def _sparkpost(esp_id: str, to: list[str]) -> Any:
    return [
        {
            "msys": {
                "message_event": {
                    "type": "delivery",
                    "event_id": f"{esp_id}-{addr}",
                    "transmission_id": esp_id,
                    "raw_rcpt_to": addr,
                    "rcpt_to": addr,
                    "timestamp": str(STAMP),
                    "raw_reason": "250 2.0.0 OK",
                }
            }
        }
        for addr in to
    ]


def _mailjet(esp_id: str, to: list[str]) -> Any:
    return [
        {"event": "sent", "time": STAMP, "MessageID": int(esp_id), "email": a, "smtp_reply": "250"}
        for a in to
    ]


def _mailtrap(esp_id: str, to: list[str]) -> Any:
    return {
        "events": [
            {
                "event": "delivery",
                "message_id": esp_id,
                "email": addr,
                "timestamp": STAMP,
                "event_id": f"{esp_id}-{addr}",
                "sending_stream": "transactional",
            }
            for addr in to
        ]
    }


def _brevo(esp_id: str, to: list[str]) -> Any:
    return {
        "event": "delivered",
        "email": to[0],
        "id": 1,
        "date": "2026-11-05 17:33:50",
        "message-id": esp_id,
        "ts_epoch": STAMP * 1000,
        "tags": ["welcome"],
        "reason": "250 OK",
    }


def _mailgun(esp_id: str, to: list[str]) -> Any:
    return {
        "event-data": {
            "event": "delivered",
            "id": "mg-event-1",
            "timestamp": STAMP + 0.5,
            "recipient": to[0],
            "message": {"headers": {"message-id": esp_id}},
            "delivery-status": {"message": "OK", "description": "", "code": 250},
        }
    }


def _mailersend(esp_id: str, to: list[str]) -> Any:
    return {
        "type": "activity.delivered",
        "created_at": "2026-11-05T16:33:50.000000Z",
        "data": {
            "id": "ms-activity-1",
            "type": "delivered",
            "created_at": "2026-11-05T16:33:50.000000Z",
            "email": {"message": {"id": esp_id}, "recipient": {"email": to[0]}, "tags": []},
        },
    }


def _mandrill(esp_id: str, to: list[str]) -> Any:
    return [
        {
            "event": "send",
            "_id": esp_id,
            "ts": STAMP,
            "msg": {"email": addr, "_id": esp_id, "state": "sent", "tags": [], "metadata": {}},
        }
        for addr in to
    ]


def _postal(esp_id: str, to: list[str]) -> Any:
    return {
        "event": "MessageSent",
        "timestamp": STAMP + 0.2,
        "uuid": "postal-event-1",
        "payload": {
            "status": "Sent",
            "details": "Message for alice accepted",
            "output": "250 2.0.0 OK",
            "message": {
                "id": int(esp_id),
                "token": "tok",
                "direction": "outgoing",
                "message_id": "x@postal.example.com",
                "to": to[0],
                "from": "site@example.com",
                "subject": "Hello",
                "tag": "welcome",
            },
        },
    }


def _resend(esp_id: str, to: list[str]) -> Any:
    return {
        "type": "email.delivered",
        "created_at": "2026-11-05T16:33:50.000Z",
        "data": {
            "email_id": esp_id,
            "to": to[:1],
            "from": "site@example.com",
            "subject": "Hello",
            "created_at": "2026-11-05T16:33:49.000Z",
        },
    }


def _sendgrid(esp_id: str, to: list[str]) -> Any:
    return [
        {
            "email": addr,
            "timestamp": STAMP,
            "event": "delivered",
            "sg_event_id": f"sg-{addr}",
            "sg_message_id": "sg-internal",
            "anymail_id": esp_id,
            "response": "250 OK",
        }
        for addr in to
    ]


def _unisender_go(esp_id: str, to: list[str]) -> Any:
    return {
        "events_by_user": [
            {
                "user_id": 1,
                "project_id": "p1",
                "events": [
                    {
                        "event_name": "transactional_email_status",
                        "event_data": {
                            "job_id": esp_id,
                            "email": addr,
                            "status": "delivered",
                            "event_time": "2026-11-05 16:33:50",
                            "delivery_info": {
                                "delivery_status": "ok",
                                "destination_response": "250 OK",
                            },
                        },
                    }
                    for addr in to
                ],
            }
        ]
    }


def _amazon_ses(esp_id: str, to: list[str]) -> Any:
    return {
        "Type": "Notification",
        "MessageId": f"sns-{esp_id}",
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:ses-events",
        "Timestamp": "2026-11-05T16:33:50.000Z",
        "Message": {
            "eventType": "Delivery",
            "mail": {"messageId": esp_id, "destination": to, "headers": []},
            "delivery": {"recipients": to, "smtpResponse": "250 2.0.0 OK"},
        },
    }


ESPS = [
    Esp("Amazon SES", "/anymail/amazon_ses/tracking/", "ses-h-1", _amazon_ses, batches=True,
        finish=_ses_finish, sign_raw=_ses_sign_raw),
    Esp("Brevo", "/anymail/brevo/tracking/", "<h-1@smtp-relay.mailin.fr>", _brevo),
    Esp("SendinBlue", "/anymail/sendinblue/tracking/", "<h-2@smtp-relay.mailin.fr>", _brevo),
    Esp("MailerSend", "/anymail/mailersend/tracking/", "ms-h-1", _mailersend,
        finish=_signed_json(_mailersend_sign), sign_raw=_mailersend_sign),
    Esp("Mailgun", "/anymail/mailgun/tracking/", "<h-1@mg.example.com>", _mailgun,
        finish=_mailgun_finish),
    Esp("Mailjet", "/anymail/mailjet/tracking/", "1000000000000001", _mailjet, batches=True),
    Esp("Mailtrap", "/anymail/mailtrap/tracking/", "mt-h-1", _mailtrap, batches=True),
    Esp("Mandrill", "/anymail/mandrill/", "md-h-1", _mandrill, batches=True,
        content_type=FORM, finish=_mandrill_finish, sign_raw=_mandrill_sign),
    Esp("Mandrill", "/anymail/mandrill/tracking/", "md-h-2", _mandrill, batches=True,
        content_type=FORM, finish=_mandrill_finish, sign_raw=_mandrill_sign),
    Esp("Postal", "/anymail/postal/tracking/", "1001", _postal,
        finish=_signed_json(_postal_sign), sign_raw=_postal_sign),
    Esp("Postmark", "/anymail/postmark/tracking/", "pm-h-1", _postmark),
    Esp("Resend", "/anymail/resend/tracking/", "rs-h-1", _resend),
    Esp("SendGrid", "/anymail/sendgrid/tracking/", "sg-h-1", _sendgrid, batches=True),
    Esp("SparkPost", "/anymail/sparkpost/tracking/", "sp-h-1", _sparkpost, batches=True),
    Esp("Unisender Go", "/anymail/unisender_go/tracking/", "ug-h-1", _unisender_go,
        batches=True, finish=_unisender_finish),
]  # fmt: skip


def test_every_tracking_webhook_anymail_ships_is_routed_and_tested():
    """A new anymail ESP must be added above: our URLs take all of anymail's."""
    from anymail import urls as anymail_urls

    from wagtail_maillog import webhook_urls

    tracking = {
        "/anymail/" + str(p.pattern)
        for p in anymail_urls.urlpatterns
        if p.callback.view_class.signal is not inbound  # Mandrill's is set per event
    }
    ours = {"/anymail/" + str(p.pattern) for p in webhook_urls.urlpatterns}
    assert tracking <= ours
    assert tracking == {esp.url for esp in ESPS}


@pytest.fixture(autouse=True)
def _esp_keys(settings):
    """Postal's key is made per run; no SNS subscription is ever confirmed."""
    settings.ANYMAIL = settings.ANYMAIL | {
        "POSTAL_WEBHOOK_KEY": POSTAL_PUBLIC_KEY,
        "AMAZON_SES_AUTO_CONFIRM_SNS_SUBSCRIPTIONS": False,
    }


# ---------------------------------------------------------------------------
# Posting and checking
# ---------------------------------------------------------------------------


def post(client: Any, esp: Esp, body: bytes, headers: dict[str, str], auth: str | None = AUTH):
    meta = dict(headers)
    if auth is not None:
        meta.setdefault("HTTP_AUTHORIZATION", basic(auth))
    return client.post(esp.url, data=body, content_type=esp.content_type, **meta)


def post_data(client: Any, esp: Esp, data: Any, **kwargs: Any):
    body, headers = esp.finish(esp, data)
    return post(client, esp, body, headers, **kwargs)


def snapshot() -> tuple[int, int, int, list[tuple]]:
    return (
        Event.objects.count(),
        Message.objects.count(),
        Recipient.objects.count(),
        list(
            Recipient.objects.order_by("pk").values_list(
                "status", "status_at", "opened_at", "reason", "esp_message_id"
            )
        ),
    )


def _blank(value: Any) -> bool:
    if isinstance(value, dict):
        return all(_blank(v) for v in value.values())
    if isinstance(value, list):
        return all(_blank(v) for v in value)
    return False


def is_ping(esp: Esp, body: bytes) -> bool:
    """A body without a single value (``[]``, ``{"events": []}``): answered 200, like a ping."""
    texts = (
        [v for _k, values in QueryDict(body, encoding="utf-8").lists() for v in values]
        if esp.content_type == FORM
        else [body.decode("utf-8", "replace")]
    )
    try:
        return all(_blank(json.loads(t)) for t in texts)
    except ValueError:
        return False


def errors(caplog: Any) -> list[str]:
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.ERROR]


def guard_warned(caplog: Any) -> bool:
    return any(
        r.name == "wagtail_maillog.webhooks" and r.levelno == logging.WARNING
        for r in caplog.records
    )


def assert_refused(response: Any, esp: Esp, body: bytes, before: Any, caplog: Any) -> None:
    """The property for garbage: a 4xx (a ping only may get 200), nothing written, no error."""
    event(f"{response.status_code} {response.content[:60]!r}")
    assert not errors(caplog), errors(caplog)
    assert snapshot() == before
    if response.status_code == 200 and is_ping(esp, body):
        return
    assert 400 <= response.status_code < 500, (response.status_code, response.content[:200])
    if response.status_code in (400, 413):
        assert guard_warned(caplog)


@pytest.fixture
def seeded(request):
    """The mail the ESP's valid payload is about (of every ESP without one), sent and queued."""
    params = getattr(request.node, "callspec", None)
    esp = params.params.get("esp") if params else None
    for each in [esp] if esp else ESPS:
        send_with_ids([ALICE, BOB], each.esp_id, subject=f"Via {each.name}")


#: Examples per property and URL; MAILLOG_HYPOTHESIS_EXAMPLES=500 for a deep run.
EXAMPLES = int(os.environ.get("MAILLOG_HYPOTHESIS_EXAMPLES", "30"))
HYPOTHESIS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# ---------------------------------------------------------------------------
# Strategies
# ---------------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats()  # NaN and infinities too: Python's json writes and reads them
    | st.text(max_size=30)
    | st.text(st.characters(categories=["Cs", "Cc"]), max_size=5)  # NUL, lone surrogates
    | st.sampled_from(
        [
            "",
            "2026-11-05T16:33:50",  # no time zone
            "2026-11-05T16:33:50Z",
            "2026-11-05 16:33:50",
            "0",
            "-1",
            "1e308",
            "99999999999999999999",
            "not a date",
            "<x@y>",
            "alice@example.com",
            "inbound",
            "delivered",
        ]
    )
    | st.integers(1000, 6000).map(lambda n: "x" * n)  # longer than any column
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)


def valid_data(esp: Esp, esp_id: str | None = None) -> Any:
    return esp.valid(esp_id or esp.esp_id, [ALICE, BOB] if esp.batches else [ALICE])


@st.composite
def raw_garbage(draw: Any, esp: Esp) -> tuple[bytes, dict[str, str]]:
    """Bytes that are no valid payload: random, truncated, or not UTF-8; signed if possible."""
    full, _headers = esp.finish(esp, valid_data(esp))
    kind = draw(st.sampled_from(["bytes", "text", "truncated", "not utf-8"]))
    if kind == "bytes":
        body = draw(st.binary(max_size=400))
    elif kind == "text":
        body = draw(st.text(max_size=400)).encode("utf-8", "surrogatepass")
    elif kind == "truncated" or esp.content_type == FORM:  # a form decodes any bytes
        body = full[: draw(st.integers(0, len(full) - 1))]
    else:
        at = draw(st.integers(0, len(full)))
        body = (
            full[:at]
            + draw(st.sampled_from([b"\xff", b"\xc3(", b"\x80", b"\xed\xa0\x80"]))
            + full[at:]
        )
    return body, esp.sign_raw(esp, body)


@st.composite
def wrong_data(draw: Any, esp: Esp) -> Any:
    """Well-formed JSON of the wrong type or shape, signed as the ESP would."""
    kind = draw(st.sampled_from(["random", "stringified", "wrapped", "events of random"]))
    if kind == "random":
        return draw(json_values)
    if kind == "stringified":
        return json.dumps(valid_data(esp))
    if kind == "wrapped":
        key = draw(
            st.text(min_size=1, max_size=10).filter(lambda k: k not in ("events", "Message"))
        )
        return {key: valid_data(esp)}
    # the ESP's container, holding random values where events belong
    items = draw(st.lists(scalars | st.lists(json_values, max_size=3), min_size=1, max_size=4))
    return (
        items if isinstance(valid_data(esp), list) else {"events": items, "events_by_user": items}
    )


def _paths(value: Any, prefix: tuple = ()) -> Iterator[tuple]:
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _paths(child, (*prefix, index))


def _replace(value: Any, path: tuple, new: Any, delete: bool = False) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        copy = dict(value)
        if delete and not rest:
            del copy[head]
        else:
            copy[head] = _replace(value[head], rest, new, delete)
        return copy
    copy = list(value)
    if delete and not rest:
        del copy[head]
    else:
        copy[head] = _replace(value[head], rest, new, delete)
    return copy


@st.composite
def mutated_data(draw: Any, esp: Esp, esp_id: str) -> Any:
    """A valid payload with a few of its values replaced, removed or retyped."""
    data = valid_data(esp, esp_id)
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(data) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        if draw(st.booleans()) and draw(st.booleans()):
            data = _replace(data, path, None, delete=True)
        else:
            data = _replace(data, path, draw(json_values))
    return data


def bad_auth() -> st.SearchStrategy[str | None]:
    """A wrong Authorization header (None: none at all)."""
    return st.one_of(
        st.none(),
        st.text(max_size=40).map(lambda t: t.replace("\n", " ")),
        st.tuples(st.text(max_size=12), st.text(max_size=12))
        .map(lambda up: f"{up[0]}:{up[1]}")
        .filter(lambda c: c != AUTH)
        .map(basic),
        st.text(max_size=12).filter(lambda p: p != "secret").map(lambda p: basic(f"hook:{p}")),
        st.just("Bearer " + base64.b64encode(AUTH.encode()).decode()),
        st.just("Basic " + AUTH),  # not base64
    )


@contextmanager
def rolled_back() -> Iterator[None]:
    """Undo what one hypothesis example wrote (each example starts from the seeded mail)."""
    with transaction.atomic():
        yield
        transaction.set_rollback(True)


# ---------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("esp", ESPS, ids=str)
@HYPOTHESIS
@given(data=st.data())
def test_garbage_bodies_are_refused(client, caplog, seeded, esp, data):
    caplog.set_level(logging.WARNING)
    if data.draw(st.booleans(), label="raw bytes"):
        body, headers = data.draw(raw_garbage(esp), label="body")
    else:
        body, headers = esp.finish(esp, data.draw(wrong_data(esp), label="data"))
    caplog.clear()
    before = snapshot()
    response = post(client, esp, body, headers)
    assert_refused(response, esp, body, before, caplog)


@pytest.mark.parametrize("esp", ESPS, ids=str)
@HYPOTHESIS
@given(auth=bad_auth())
def test_wrong_or_missing_basic_auth_is_refused(client, caplog, seeded, esp, auth):
    caplog.set_level(logging.WARNING)
    body, headers = esp.finish(esp, valid_data(esp))
    meta = headers | ({"HTTP_AUTHORIZATION": auth} if auth is not None else {})
    caplog.clear()
    before = snapshot()
    response = post(client, esp, body, meta, auth=None)
    assert_refused(response, esp, body, before, caplog)
    assert response.status_code != 200


SIGNED = [
    esp
    for esp in ESPS
    if esp.name in {"MailerSend", "Mailgun", "Mandrill", "Postal", "Unisender Go"}
]


@pytest.mark.parametrize("esp", SIGNED, ids=str)
@HYPOTHESIS
@given(data=st.data())
def test_wrong_or_missing_signature_is_refused(client, caplog, seeded, esp, data):
    """Right basic auth, but the ESP's signature is missing, forged, or for another body."""
    caplog.set_level(logging.WARNING)
    body, headers = esp.finish(esp, valid_data(esp))
    how = data.draw(st.sampled_from(["missing", "forged", "other body"]), label="how")
    if esp.name == "Mailgun":  # the signature is in the body, over a timestamp and a token
        signed = json.loads(body)
        if how == "missing":
            del signed["signature"]
        elif how == "forged":
            signed["signature"]["signature"] = data.draw(st.text(max_size=64))
        else:
            signed["signature"]["token"] += data.draw(st.text(min_size=1, max_size=5))
        body = json.dumps(signed).encode()
    elif esp.name == "Unisender Go":  # "auth" in the body, an MD5 of the whole body
        signed = json.loads(body)
        if how == "missing":
            del signed["auth"]
        elif how == "forged":
            signed["auth"] = data.draw(st.text(max_size=32).filter(lambda a: a != signed["auth"]))
        else:
            signed["events_by_user"][0]["project_id"] = "p2"
        body = json.dumps(signed).encode()
    else:  # a header over the raw body
        (name,) = headers
        if how == "missing":
            headers = {}
        elif how == "forged":
            headers = {name: data.draw(st.text(max_size=64))}
        else:
            at = data.draw(st.integers(0, len(body) - 1))
            body = body[:at] + bytes([(body[at] + 1) % 256]) + body[at + 1 :]
    caplog.clear()
    before = snapshot()
    response = post(client, esp, body, headers)
    assert_refused(response, esp, body, before, caplog)
    assert response.status_code != 200


@pytest.mark.parametrize("esp", ESPS, ids=str)
@settings(HYPOTHESIS, max_examples=max(8, EXAMPLES // 4))
@given(size=st.integers(2049, 40_000))
def test_oversized_bodies_are_refused(client, caplog, seeded, esp, size):
    """Over ``DATA_UPLOAD_MAX_MEMORY_SIZE`` (here 2 KB): 413, and a warning naming the setting."""
    caplog.set_level(logging.WARNING)
    body, _headers = esp.finish(esp, valid_data(esp))
    body += (b"&pad=" + b"x" * size) if esp.content_type == FORM else b" " * size
    headers = esp.sign_raw(esp, body)
    caplog.clear()
    before = snapshot()
    with override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=2048):
        response = post(client, esp, body, headers)
    assert_refused(response, esp, body, before, caplog)
    assert response.status_code == 413
    assert "DATA_UPLOAD_MAX_MEMORY_SIZE" in caplog.text


@contextmanager
def dispatched() -> Iterator[list[Any]]:
    """The tracking events anymail sends while the block runs."""
    from anymail.signals import tracking

    seen: list[Any] = []

    def receiver(sender: Any, event: Any, esp_name: str, **kwargs: Any) -> None:
        seen.append(event)

    tracking.connect(receiver, dispatch_uid="hostile-tests")
    try:
        yield seen
    finally:
        tracking.disconnect(dispatch_uid="hostile-tests")


@pytest.mark.parametrize("esp", ESPS, ids=str)
@HYPOTHESIS
@given(data=st.data())
def test_damaged_payloads_never_fail_the_server(client, caplog, seeded, esp, data):
    """A valid payload with some values wrong: stored if still usable, else a 4xx; never a 5xx.

    A 200 means stored: each usable event anymail parsed is in the table (or
    was a duplicate within the batch), none silently skipped.
    """
    caplog.set_level(logging.WARNING)
    esp_id = data.draw(st.sampled_from([esp.esp_id, esp.orphan_id]), label="id")
    payload = data.draw(mutated_data(esp, esp_id), label="payload")
    body, headers = esp.finish(esp, payload)
    with rolled_back():
        caplog.clear()
        before = snapshot()
        with dispatched() as events:
            response = post(client, esp, body, headers)
        event(f"{response.status_code} {response.content[:60]!r}")
        assert not errors(caplog), errors(caplog)
        if response.status_code == 200:
            usable = [e for e in events if e.message_id or e.recipient]
            stored = Event.objects.count()
            assert stored <= len(usable)
            assert stored >= 1 or not usable
            assert all(e.esp_message_id or e.address for e in Event.objects.all())
            assert Message.objects.count() == before[1]
        else:
            assert 400 <= response.status_code < 500, response.content[:300]
            assert snapshot() == before


# ---------------------------------------------------------------------------
# Valid payloads: stored, replays stored once, unknown messages kept as orphans
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("esp", ESPS, ids=str)
def test_a_valid_batch_is_stored_once_even_when_replayed(client, caplog, seeded, esp):
    caplog.set_level(logging.WARNING)
    first = post_data(client, esp, valid_data(esp))
    assert first.status_code == 200, first.content
    stored = Event.objects.count()
    assert stored == (2 if esp.batches else 1)
    for _ in range(2):  # the ESP did not see our 200 and sends the same POST again
        assert post_data(client, esp, valid_data(esp)).status_code == 200
    assert Event.objects.count() == stored
    addresses = [ALICE, BOB] if esp.batches else [ALICE]
    for recipient in Recipient.objects.filter(esp_message_id=esp.esp_id, address__in=addresses):
        assert recipient.status in (Status.SENT, Status.DELIVERED)
        assert recipient.events.count() == 1
    assert not errors(caplog)


@pytest.mark.parametrize("esp", ESPS, ids=str)
def test_events_of_unknown_messages_are_kept_as_orphans(client, seeded, esp):
    unknown = esp.orphan_id
    assert post_data(client, esp, valid_data(esp, unknown)).status_code == 200
    orphans = Event.objects.filter(recipient__isnull=True)
    assert orphans.count() == Event.objects.count() == (2 if esp.batches else 1)
    assert {e.address for e in orphans} <= {ALICE, BOB}
    assert all(e.esp_message_id for e in orphans)
    assert not Recipient.objects.exclude(status=Status.QUEUED).exists()


# ---------------------------------------------------------------------------
# Regressions: bodies the properties found that failed the server
# ---------------------------------------------------------------------------


def _ses_nul_message_id(data: Any) -> Any:
    return data | {"MessageId": "\x00"}  # PostgreSQL: DataError, answered 503 for ever


def _mailersend_surrogate_id(data: Any) -> Any:
    data["data"]["id"] = "\ud800"  # UnicodeEncodeError in the dedupe key: 500
    return data


def _mailersend_nan(data: Any) -> Any:
    data["data"]["extra"] = [float("nan"), float("inf")]
    return data


def _postmark_lone_surrogate(data: Any) -> Any:
    data["Metadata"] = {"note": "\udfff"}  # MariaDB's JSON_VALID: IntegrityError 4025, 503
    return data


def _nested(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = [value]
    return value


def _postmark_nested_40_deep(data: Any) -> Any:
    # Under the webhook's own limit (100 levels), over MariaDB's (31): 503 for ever.
    data["Metadata"] = {"deep": _nested(40)}
    return data


@pytest.mark.parametrize(
    "esp_name, damage",
    [
        ("Amazon SES", _ses_nul_message_id),
        ("MailerSend", _mailersend_surrogate_id),
        ("MailerSend", _mailersend_nan),
        ("Postmark", _postmark_lone_surrogate),
        ("Postmark", _postmark_nested_40_deep),
    ],
)
def test_unstorable_text_in_a_valid_event_is_cleaned_not_failed(
    client, caplog, seeded, esp_name, damage
):
    caplog.set_level(logging.WARNING)
    esp = next(e for e in ESPS if e.name == esp_name)
    response = post_data(client, esp, damage(valid_data(esp)))
    assert response.status_code == 200, response.content
    assert Event.objects.count() == (2 if esp.batches else 1)
    assert not errors(caplog)
    assert post_data(client, esp, damage(valid_data(esp))).status_code == 200  # replayed
    assert Event.objects.count() == (2 if esp.batches else 1)


def test_json_mariadb_refuses_is_stored_cleaned_and_whole(client, caplog, seeded):
    """A payload 40 levels deep with a lone surrogate: every database keeps all of it.

    MariaDB's JSON check refuses 32 levels or more and lone surrogates: there the
    part below level 31 is kept as its JSON text and the surrogate as U+FFFD.
    """
    caplog.set_level(logging.WARNING)
    esp = next(e for e in ESPS if e.name == "Postmark")
    data = valid_data(esp)
    data["Metadata"] = {"deep": _nested(40), "note": "a\udfffb", "emoji": "\U0001f600"}
    assert post_data(client, esp, data).status_code == 200
    assert not errors(caplog)
    raw = Event.objects.get().raw
    assert raw["Metadata"]["emoji"] == "\U0001f600"
    if VENDOR == "mysql":
        assert raw["Metadata"]["note"] == "a\ufffdb"
        level, value = 2, raw["Metadata"]["deep"]  # raw is level 1
        while isinstance(value, list):
            level, value = level + 1, value[0]
        assert level == 31
        assert _nested(40 - (31 - 2)) == json.loads(value)  # the rest, as JSON text
    else:
        assert raw["Metadata"]["deep"] == _nested(40)


def test_a_timestamp_without_time_zone_is_utc_not_a_crash(client, caplog, seeded):
    """anymail keeps MailerSend's, Resend's and SNS's zone-less times naive: TypeError, 500."""
    caplog.set_level(logging.WARNING)
    esp = next(e for e in ESPS if e.name == "MailerSend")
    opened = valid_data(esp)
    opened["data"]["type"] = "opened"
    assert post_data(client, esp, opened).status_code == 200
    opened["data"] |= {"id": "ms-activity-2", "created_at": "2026-11-04T16:33:50"}
    assert post_data(client, esp, opened).status_code == 200
    alice = Recipient.objects.get(esp_message_id=esp.esp_id, address=ALICE)
    assert alice.status == Status.OPENED
    assert alice.opened_at.isoformat() == "2026-11-04T16:33:50+00:00"  # the earlier open
    assert not errors(caplog)


# ---------------------------------------------------------------------------
# The database goes away during a webhook (issue 8, point 3)
# ---------------------------------------------------------------------------

VENDOR = django_settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
SPARKPOST = next(esp for esp in ESPS if esp.name == "SparkPost")

#: The statements of one ingest, each of which may be the one that fails.
STATEMENTS = {
    "reading known events": r"^\s*SELECT\b.*\bwagtail_maillog_event\b",
    "reading recipients": r"^\s*SELECT\b.*\bwagtail_maillog_recipient\b",
    "inserting events": r"^\s*INSERT\b.*\bwagtail_maillog_event\b",
    "updating recipients": r"^\s*UPDATE\b.*\bwagtail_maillog_recipient\b",
}


def outage_batch() -> tuple[bytes, dict[str, str]]:
    """Deliveries for Alice and Bob (known mail) and two events of unknown mail."""
    return SPARKPOST.finish(
        SPARKPOST, valid_data(SPARKPOST) + valid_data(SPARKPOST, SPARKPOST.orphan_id)
    )


def fail_statement(pattern: str, error: Exception) -> Callable[..., Any]:
    """A ``connection.execute_wrapper``: statements matching ``pattern`` raise ``error``."""

    def wrapper(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if re.search(pattern, sql, re.IGNORECASE | re.DOTALL):
            raise error
        return execute(sql, params, many, context)

    return wrapper


def assert_retry_later(response: Any, caplog: Any) -> None:
    assert response.status_code == 503, response.content
    assert response["Retry-After"] == str(RETRY_AFTER_SECONDS)
    assert guard_warned(caplog)


def assert_recovered(client: Any) -> None:
    """The ESP sends the same POST again, twice: stored exactly once."""
    body, headers = outage_batch()
    for _ in range(2):
        assert post(client, SPARKPOST, body, headers).status_code == 200
    assert Event.objects.count() == 4
    assert Event.objects.filter(recipient__isnull=True).count() == 2
    statuses = dict(
        Recipient.objects.filter(esp_message_id=SPARKPOST.esp_id).values_list("address", "status")
    )
    assert statuses == {ALICE: Status.DELIVERED, BOB: Status.DELIVERED}


@pytest.mark.parametrize("statement", STATEMENTS)
def test_a_statement_failing_during_ingest_answers_503_and_the_replay_stores_once(
    client, caplog, seeded, statement
):
    caplog.set_level(logging.WARNING)
    body, headers = outage_batch()
    before = snapshot()
    lost = OperationalError("server closed the connection unexpectedly")
    with connection.execute_wrapper(fail_statement(STATEMENTS[statement], lost)):
        response = post(client, SPARKPOST, body, headers)
    assert_retry_later(response, caplog)
    assert snapshot() == before  # nothing half-written: no event, no status moved
    assert_recovered(client)


def test_the_database_failing_while_anymails_view_runs_answers_503(client, caplog, seeded):
    """Another app's tracking receiver reads the database while it is away."""
    from anymail.signals import tracking

    def reads_the_database(sender: Any, event: Any, esp_name: str, **kwargs: Any) -> None:
        Recipient.objects.filter(esp_message_id=event.message_id).exists()

    caplog.set_level(logging.WARNING)
    body, headers = outage_batch()
    before = snapshot()
    tracking.connect(reads_the_database, dispatch_uid="reads-the-database")
    try:
        lost = OperationalError("could not connect to server: Connection refused")
        with connection.execute_wrapper(fail_statement(r".", lost)):
            response = post(client, SPARKPOST, body, headers)
    finally:
        tracking.disconnect(dispatch_uid="reads-the-database")
    assert_retry_later(response, caplog)
    assert snapshot() == before
    assert_recovered(client)


@pytest.mark.skipif(VENDOR != "sqlite3", reason="SQLite's own locking")
@pytest.mark.django_db(transaction=True)
def test_sqlite_table_locked_by_another_connection_answers_503(client, caplog):
    """A second connection holds a read lock on the recipients: our UPDATE cannot run.

    The events were inserted in the same transaction before it: rolled back too.
    """
    caplog.set_level(logging.WARNING)
    send_with_ids([ALICE, BOB], SPARKPOST.esp_id)
    body, headers = outage_batch()
    before = snapshot()
    other = sqlite3.connect(connection.settings_dict["NAME"], uri=True, isolation_level=None)
    try:
        other.execute("BEGIN")
        other.execute("SELECT count(*) FROM wagtail_maillog_recipient").fetchall()
        response = post(client, SPARKPOST, body, headers)
        other.execute("COMMIT")
    finally:
        other.close()
    assert_retry_later(response, caplog)
    assert "locked" in caplog.text
    assert snapshot() == before
    assert_recovered(client)


@pytest.mark.skipif(VENDOR != "postgresql", reason="PostgreSQL's server process")
@pytest.mark.django_db(transaction=True)
def test_postgres_connection_killed_mid_ingest_answers_503(client, caplog):
    """The server ends our connection between the INSERT of events and the UPDATE.

    ``pg_terminate_backend`` from a second connection, as a failover or a
    restart does; the UPDATE then meets a dead connection.
    """
    import psycopg

    caplog.set_level(logging.WARNING)
    send_with_ids([ALICE, BOB], SPARKPOST.esp_id)
    body, headers = outage_batch()
    before = snapshot()
    db = connection.settings_dict
    killed: list[int] = []

    def kill_own_connection(execute: Any, sql: str, params: Any, many: bool, ctx: Any) -> Any:
        if not killed and re.search(STATEMENTS["updating recipients"], sql, re.I | re.S):
            pid = ctx["connection"].connection.info.backend_pid
            with psycopg.connect(
                dbname=db["NAME"],
                user=db["USER"],
                password=db["PASSWORD"],
                host=db["HOST"],
                port=db["PORT"],
                autocommit=True,
            ) as other:
                assert other.execute("SELECT pg_terminate_backend(%s, 5000)", [pid]).fetchone()[0]
            killed.append(pid)
        return execute(sql, params, many, ctx)

    with connection.execute_wrapper(kill_own_connection):
        response = post(client, SPARKPOST, body, headers)
    assert killed
    assert_retry_later(response, caplog)
    assert snapshot() == before  # a new connection: the INSERT died with the old one
    assert_recovered(client)


def test_a_body_with_data_but_no_event_is_refused(client, caplog, seeded):
    """Found by the garbage property: a Mailtrap batch under another key got 200, unstored."""
    caplog.set_level(logging.WARNING)
    esp = next(e for e in ESPS if e.name == "Mailtrap")
    response = post_data(client, esp, {"0": valid_data(esp)})
    assert response.status_code == 400
    assert response.content == b"No event in the payload names a message or a recipient."
    assert not Event.objects.exists()


@pytest.mark.parametrize(
    "url, ping",
    [
        ("/anymail/mailjet/tracking/", []),
        ("/anymail/sparkpost/tracking/", [{"msys": {}}]),
        ("/anymail/mailtrap/tracking/", {"events": []}),
        ("/anymail/mandrill/", []),
    ],
)
def test_an_esps_ping_without_data_gets_200(client, url, ping):
    esp = next(e for e in ESPS if e.url == url)
    assert post_data(client, esp, ping).status_code == 200
    assert not Event.objects.exists()


@pytest.mark.parametrize(
    "esp_name, setting",
    [("MailerSend", "MAILERSEND_SIGNING_SECRET"), ("Mandrill", "MANDRILL_WEBHOOK_KEY")],
)
def test_a_missing_setting_is_a_500_not_the_esps_fault(client, settings, seeded, esp_name, setting):
    """A 400 would tell the ESP to drop the events; a 500 makes it retry until the site is fixed.

    MailerSend reads its key when the view is built, Mandrill when it validates a request.
    """
    esp = next(e for e in ESPS if e.name == esp_name)
    body, headers = esp.finish(esp, valid_data(esp))
    settings.ANYMAIL = {k: v for k, v in settings.ANYMAIL.items() if k != setting}
    client.raise_request_exception = False
    assert post(client, esp, body, headers).status_code == 500
    assert not Event.objects.exists()
