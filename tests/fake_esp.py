"""A loopback fake of the Postmark and Mailgun HTTP APIs, for tests.

A real HTTP server on 127.0.0.1 (a free port), so anymail's real backends
send through it and the status fetchers ask it, over real sockets::

    def test_something(fake_esp, settings):      # the pytest fixture
        settings.ANYMAIL = fake_esp.anymail_settings()
        ...                                      # send with anymail's backends
        fake_esp.add_postmark_event(message_id, "Delivered", "ann@example.com")
        fake_esp.fail_next(status=503, retry_after=30)

or ``with FakeESP() as fake: ...`` outside pytest.

Postmark: ``POST /email``, ``POST /email/batch``,
``GET /messages/outbound/{id}/details`` (scripted ``postmark_events``; 404
for unknown ids), ``GET /bounces/{id}`` (``postmark_bounces``). Addresses in
``postmark_inactive`` are refused as Postmark refuses inactive recipients:
left out with "Message OK, but will not deliver to these inactive addresses"
when others remain, ErrorCode 406 when none does (HTTP 422; in a batch, that
message's entry).
Mailgun (API URL ``{url}/v3``): ``POST /v3/{domain}/messages`` (form or
multipart; one call with ``recipient-variables`` is one batch),
``GET /v3/{domain}/events`` (``mailgun_events``, filtered by ``message-id``,
``mailgun_page_size`` per page, with ``paging.next`` URLs).

Every request is kept in ``requests`` (method, path, query, headers, body).

``latency`` seconds pass before each answer (a slow ESP: ``max_in_flight`` then
says how many requests it held at once); with ``keep_alive`` the fake keeps
connections open as a real API does (``connections`` counts the TCP
connections it accepted).
"""

from __future__ import annotations

import base64
import contextlib
import email.parser
import email.policy
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import getaddresses
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import pytest


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: Any  # parsed JSON, a {field: [values]} form, or the raw bytes

    def basic_auth(self) -> tuple[str, str] | None:
        value = self.headers.get("authorization", "")
        if not value.lower().startswith("basic "):
            return None
        user, _, password = base64.b64decode(value[6:]).decode().partition(":")
        return user, password


@dataclass(frozen=True)
class Sent:
    """One message the fake ESP accepted (one API call; a batch is one too)."""

    esp: str  # "postmark" or "mailgun"
    message_ids: list[str]
    recipients: list[str]
    subject: str
    batch: bool = False
    headers: tuple[tuple[str, str], ...] = ()  # Mailgun's "h:" fields, as sent
    recipient_variables: str = ""  # Mailgun's recipient-variables (JSON text)


@dataclass
class Fault:
    status: int
    retry_after: float | str | None
    path: str | None
    body: Any
    delay: float
    times: int


@dataclass
class FakeESP:
    #: Postmark MessageID: its ``MessageEvents`` (see :meth:`add_postmark_event`).
    postmark_events: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    #: Postmark bounce id: the bounce record of ``GET /bounces/{id}``.
    postmark_bounces: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Status of the details of an unknown message: 404, or 422 (ErrorCode 701).
    postmark_unknown_status: int = 404
    #: Addresses Postmark refuses as "inactive" (hard bounce or spam complaint before).
    postmark_inactive: set[str] = field(default_factory=set)
    #: Mailgun message id (with or without <>): its events (see :meth:`add_mailgun_event`).
    mailgun_events: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    mailgun_page_size: int = 300
    #: Sending domains Mailgun knows (None: any); others get 404 "Domain not found".
    mailgun_domains: set[str] | None = None
    #: Credentials the fake insists on (None: any non-empty one).
    postmark_token: str | None = None
    mailgun_api_key: str | None = None
    #: Seconds every request waits before its answer (an ESP's latency).
    latency: float = 0
    #: Keep connections open between requests (HTTP/1.1 keep-alive), as real APIs do.
    keep_alive: bool = False

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._connections = 0
        self._in_flight = 0
        self._max_in_flight = 0
        self._requests: list[Request] = []
        self._sent: list[Sent] = []
        self._faults: list[Fault] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- life cycle -------------------------------------------------------

    def start(self) -> FakeESP:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True
        server.fake = self  # type: ignore[attr-defined]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )  # stop() waits at most one poll interval
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeESP:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "start the fake ESP first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def postmark_api_url(self) -> str:
        return f"{self.url}/"

    @property
    def mailgun_api_url(self) -> str:
        return f"{self.url}/v3"

    def anymail_settings(self, **extra: Any) -> dict[str, Any]:
        """An ``ANYMAIL`` setting that sends both ESPs' calls here."""
        return {
            "POSTMARK_SERVER_TOKEN": "postmark-token",
            "POSTMARK_API_URL": self.postmark_api_url,
            "MAILGUN_API_KEY": "mailgun-key",
            "MAILGUN_API_URL": self.mailgun_api_url,
            **extra,
        }

    # -- what happened ----------------------------------------------------

    @property
    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._requests)

    @property
    def sent(self) -> list[Sent]:
        with self._lock:
            return list(self._sent)

    @property
    def connections(self) -> int:
        """TCP connections accepted so far."""
        with self._lock:
            return self._connections

    @property
    def max_in_flight(self) -> int:
        """The most requests the fake was answering at the same moment."""
        with self._lock:
            return self._max_in_flight

    def _begin(self) -> None:
        with self._lock:
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)

    def _end(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def _connected(self) -> None:
        with self._lock:
            self._connections += 1

    def requests_to(self, path_start: str, method: str | None = None) -> list[Request]:
        return [
            r
            for r in self.requests
            if r.path.startswith(path_start) and (method is None or r.method == method)
        ]

    # -- scripting --------------------------------------------------------

    def fail_next(
        self,
        status: int = 503,
        retry_after: float | str | None = None,
        *,
        path: str | None = None,
        times: int = 1,
        body: Any = None,
        delay: float = 0,
    ) -> None:
        """Answer the next ``times`` requests (whose path starts with ``path``) with an error.

        ``delay`` seconds pass before the answer (for client timeouts).
        """
        with self._lock:
            self._faults.append(Fault(status, retry_after, path, body, delay, times))

    def add_postmark_event(
        self,
        message_id: str,
        kind: str,
        recipient: str,
        at: str = "2026-03-02T10:00:00.1234567-05:00",
        **details: Any,
    ) -> dict[str, Any]:
        """Script a ``MessageEvents`` entry ("Delivered", "Bounced", "Opened", ...)."""
        if kind in ("Delivered", "Transient") and not details:
            details = {
                "DeliveryMessage": "smtp;250 2.0.0 OK" if kind == "Delivered" else "421 later",
                "DestinationServer": "mx.example.com",
                "DestinationIP": "192.0.2.25",
            }
        event = {"Recipient": recipient, "Type": kind, "ReceivedAt": at, "Details": details}
        self.postmark_events.setdefault(message_id, []).append(event)
        return event

    def add_postmark_bounce(
        self,
        message_id: str,
        recipient: str,
        bounce_id: int,
        bounce_type: str = "HardBounce",
        at: str = "2026-03-02T10:05:00Z",
        description: str = "The server was unable to deliver your message.",
        details: str = "smtp;550 5.1.1 The email account does not exist.",
    ) -> None:
        """Script a "Bounced" event and the bounce record behind it."""
        self.add_postmark_event(
            message_id, "Bounced", recipient, at, Summary=description, BounceID=bounce_id
        )
        self.postmark_bounces[str(bounce_id)] = {
            "ID": bounce_id,
            "Type": bounce_type,
            "Name": bounce_type,
            "MessageID": message_id,
            "Description": description,
            "Details": details,
            "Email": recipient,
            "BouncedAt": at,
            "Inactive": bounce_type == "HardBounce",
        }

    def add_mailgun_event(
        self, message_id: str, event: str, recipient: str, timestamp: float = 1772445600.25, **extra
    ) -> dict[str, Any]:
        """Script an events-API item ("delivered", "failed", "opened", ...)."""
        bare = _bare(message_id)
        item: dict[str, Any] = {
            "event": event,
            "id": uuid.uuid4().hex[:22],
            "timestamp": timestamp,
            "log-level": "info",
            "recipient": recipient,
            "recipient-domain": recipient.rpartition("@")[2],
            "message": {"headers": {"message-id": bare, "to": recipient}, "size": 512},
            "tags": [],
            "user-variables": {},
        }
        if event == "delivered":
            item["delivery-status"] = {"code": 250, "message": "OK", "description": ""}
        item.update(extra)
        self.mailgun_events.setdefault(bare, []).append(item)
        return item

    # -- the server side --------------------------------------------------

    def _record(self, request: Request) -> Fault | None:
        with self._lock:
            self._requests.append(request)
            for fault in self._faults:
                if fault.path is None or request.path.startswith(fault.path):
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def _add_sent(self, sent: Sent) -> None:
        with self._lock:
            self._sent.append(sent)


def _bare(message_id: str) -> str:
    return message_id.strip().removeprefix("<").removesuffix(">")


def _addresses(value: Any) -> list[str]:
    values = value if isinstance(value, list) else [value] if value else []
    return [addr.lower() for _name, addr in getaddresses([str(v) for v in values]) if addr]


def _parse_body(content_type: str, raw: bytes) -> Any:
    if not raw:
        return None
    if content_type.startswith("application/json"):
        return json.loads(raw)
    if content_type.startswith("application/x-www-form-urlencoded"):
        return parse_qs(raw.decode(), keep_blank_values=True)
    if content_type.startswith("multipart/form-data"):
        head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + raw)
        form: dict[str, list[Any]] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True) or b""
            value = payload if part.get_filename() else payload.decode()
            form.setdefault(str(name), []).append(value)
        return form
    return raw


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    @property
    def fake(self) -> FakeESP:
        return self.server.fake  # type: ignore[attr-defined]

    def setup(self) -> None:
        if self.fake.keep_alive:
            self.timeout = 10  # an idle kept-alive connection ends after 10 s
            # Headers and body go out as two writes: without TCP_NODELAY the second
            # waits for the client's delayed ACK, milliseconds per request.
            self.disable_nagle_algorithm = True
        super().setup()
        self.fake._connected()

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _handle(self) -> None:
        self.fake._begin()
        try:
            if self.fake.latency:
                time.sleep(self.fake.latency)
            self._answer()
        finally:
            self.fake._end()

    def _answer(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            body = _parse_body(headers.get("content-type", ""), raw)
        except ValueError:
            body = raw
        request = Request(self.command, parts.path, parse_qs(parts.query), headers, body)
        fault = self.fake._record(request)
        if fault is not None:
            time.sleep(fault.delay)
            extra = {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
            answer = fault.body or {"ErrorCode": 500, "Message": f"Fake ESP: HTTP {fault.status}"}
            self._send(fault.status, answer, extra)
            return
        status, answer = _route(self.fake, request, self._base())
        self._send(status, answer)

    def _base(self) -> str:
        return f"http://{self.headers.get('Host') or '127.0.0.1'}"

    def _send(self, status: int, answer: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if not self.fake.keep_alive:
            self.send_header("Connection", "close")  # no idle keep-alive threads after stop()
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        # The client may have given up (its timeout shorter than a fault's ``delay``).
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(data)
        self.close_connection = not self.fake.keep_alive


# -- the two fake APIs -----------------------------------------------------

Answer = tuple[int, Any]


def _route(fake: FakeESP, request: Request, base: str) -> Answer:
    path, method = request.path, request.method
    segments = [unquote(s) for s in path.strip("/").split("/")]
    if path.startswith("/v3/"):
        return _mailgun(fake, request, segments[1:], base)
    if method == "POST" and path in ("/email", "/email/batch"):
        return _postmark_send(fake, request, batch=path.endswith("/batch"))
    if method == "GET" and len(segments) == 4 and segments[:2] == ["messages", "outbound"]:
        return _postmark_details(fake, request, segments[2])
    if method == "GET" and len(segments) == 2 and segments[0] == "bounces":
        return _postmark_bounce(fake, request, segments[1])
    return 404, {"ErrorCode": 404, "Message": f"Fake ESP: no {method} {path}"}


def _postmark_denied(fake: FakeESP, request: Request) -> Answer | None:
    token = request.headers.get("x-postmark-server-token", "")
    if not token or (fake.postmark_token is not None and token != fake.postmark_token):
        return 401, {"ErrorCode": 10, "Message": "Bad or missing Server API token."}
    return None


def _postmark_send(fake: FakeESP, request: Request, batch: bool) -> Answer:
    denied = _postmark_denied(fake, request)
    if denied:
        return denied
    messages = request.body if batch else [request.body]
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        return 422, {"ErrorCode": 402, "Message": "Invalid JSON"}
    answers = []
    for message in messages:
        message_id = str(uuid.uuid4())
        recipients = [a for key in ("To", "Cc", "Bcc") for a in _addresses(message.get(key))]
        inactive = [a for a in recipients if a in fake.postmark_inactive]
        if inactive and len(inactive) == len(recipients):
            answers.append(
                {
                    "ErrorCode": 406,
                    "Message": "You tried to send to a recipient that has been marked as "
                    f"inactive.\nFound inactive addresses: {', '.join(inactive)}.\n"
                    "Inactive recipients are ones that have generated a hard bounce or a "
                    "spam complaint. ",
                }
            )
            continue
        answer: dict[str, Any] = {
            "SubmittedAt": datetime.now(UTC).isoformat(),
            "MessageID": message_id,
            "ErrorCode": 0,
            "Message": "OK",
        }
        if inactive:
            answer["Message"] = (
                "Message OK, but will not deliver to these inactive addresses: "
                f"{', '.join(inactive)}. Inactive recipients are ones that have generated "
                "a hard bounce or a spam complaint."
            )
        if message.get("To"):
            answer["To"] = message["To"]
        answers.append(answer)
        accepted = [a for a in recipients if a not in inactive]
        fake._add_sent(Sent("postmark", [message_id], accepted, str(message.get("Subject"))))
    if batch:
        return 200, answers
    return (422 if answers[0]["ErrorCode"] else 200), answers[0]


def _postmark_details(fake: FakeESP, request: Request, message_id: str) -> Answer:
    denied = _postmark_denied(fake, request)
    if denied:
        return denied
    if message_id not in fake.postmark_events:
        if fake.postmark_unknown_status == 422:
            return 422, {"ErrorCode": 701, "Message": "This message was not found."}
        return 404, {"ErrorCode": 701, "Message": "This message was not found."}
    events = fake.postmark_events[message_id]
    return 200, {
        "MessageID": message_id,
        "Status": "Sent",
        "Recipients": sorted({e.get("Recipient") for e in events}),
        "MessageEvents": events,
    }


def _postmark_bounce(fake: FakeESP, request: Request, bounce_id: str) -> Answer:
    denied = _postmark_denied(fake, request)
    if denied:
        return denied
    if bounce_id not in fake.postmark_bounces:
        return 404, {"ErrorCode": 0, "Message": "Bounce not found."}
    return 200, fake.postmark_bounces[bounce_id]


def _mailgun(fake: FakeESP, request: Request, segments: list[str], base: str) -> Answer:
    auth = request.basic_auth()
    if auth is None or auth[0] != "api" or not auth[1]:
        return 401, {"message": "Invalid private key"}
    if fake.mailgun_api_key is not None and auth[1] != fake.mailgun_api_key:
        return 401, {"message": "Invalid private key"}
    if not segments:
        return 404, {"message": "Not Found"}
    domain, rest = segments[0], segments[1:]
    if fake.mailgun_domains is not None and domain not in fake.mailgun_domains:
        return 404, {"message": f"Domain not found: {domain}"}
    if request.method == "POST" and rest == ["messages"]:
        return _mailgun_send(fake, request, domain)
    if request.method == "GET" and rest[:1] == ["events"] and len(rest) <= 2:
        return _mailgun_events(fake, request, domain, rest[1] if len(rest) == 2 else None, base)
    return 404, {"message": "Not Found"}


def _mailgun_send(fake: FakeESP, request: Request, domain: str) -> Answer:
    form = request.body if isinstance(request.body, dict) else {}
    recipients = [a for key in ("to", "cc", "bcc") for a in _addresses(form.get(key, []))]
    if not recipients:
        return 400, {"message": "'to' parameter is missing"}
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    message_id = f"<{stamp}.{uuid.uuid4().hex[:16].upper()}@{domain}>"
    subject = (form.get("subject") or [""])[0]
    fake._add_sent(
        Sent(
            "mailgun",
            [message_id],
            recipients,
            subject,
            batch="recipient-variables" in form,
            headers=tuple((k, v[0]) for k, v in form.items() if k.startswith("h:")),
            recipient_variables=(form.get("recipient-variables") or [""])[0],
        )
    )
    return 200, {"id": message_id, "message": "Queued. Thank you."}


#: The query parameters of the events API the fake honours.
EVENT_FILTERS = ("message-id", "event", "begin", "end", "from")


def _page_token(query: dict[str, str], offset: int) -> str:
    data = json.dumps({"q": query, "o": offset}).encode()
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _read_token(token: str) -> tuple[dict[str, str], int]:
    data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    return dict(data["q"]), int(data["o"])


def _matches(item: dict[str, Any], query: dict[str, str]) -> bool:
    """An events-API item against Mailgun's filters (message id, event type, time range,
    sender)."""
    headers = item["message"]["headers"]
    if query.get("message-id") and _bare(headers["message-id"]) != _bare(query["message-id"]):
        return False
    if query.get("event") and item["event"] != query["event"]:
        return False
    if query.get("begin") and item["timestamp"] < float(query["begin"]):
        return False
    if query.get("end") and item["timestamp"] > float(query["end"]):
        return False
    return not query.get("from") or query["from"] in headers.get("from", "")


def _mailgun_events(
    fake: FakeESP, request: Request, domain: str, token: str | None, base: str
) -> Answer:
    if token is None:
        query = {k: request.query[k][0] for k in EVENT_FILTERS if request.query.get(k)}
        offset = 0
    else:
        try:
            query, offset = _read_token(token)
        except (ValueError, KeyError):
            return 400, {"message": "Invalid page token"}
    limit = int((request.query.get("limit") or ["300"])[0])
    size = max(1, min(limit, 300, fake.mailgun_page_size))
    if query.get("message-id"):
        candidates = fake.mailgun_events.get(_bare(query["message-id"]), [])
    else:
        candidates = sorted(
            (e for events in fake.mailgun_events.values() for e in events),
            key=lambda e: e["timestamp"],
        )
    events = [e for e in candidates if _matches(e, query)]
    page = events[offset : offset + size]
    url = f"{base}/v3/{quote(domain, safe='')}/events"
    return 200, {
        "items": page,
        "paging": {
            "next": f"{url}/{_page_token(query, offset + len(page))}",
            "previous": f"{url}/{_page_token(query, max(0, offset - size))}",
            "first": f"{url}/{_page_token(query, 0)}",
            "last": f"{url}/{_page_token(query, max(0, len(events) - size))}",
        },
    }


@pytest.fixture
def fake_esp() -> Iterator[FakeESP]:
    """A running :class:`FakeESP`, stopped after the test."""
    with FakeESP() as fake:
        yield fake
