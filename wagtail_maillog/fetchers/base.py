"""What a status fetcher is, and the HTTP plumbing the shipped ones share.

A fetcher asks an ESP's message-status API what happened to messages whose
webhooks never came, and turns the answer into anymail
``AnymailTrackingEvent`` objects, as the ESP's webhook would have. It never
invents an event: what the ESP does not report is not yielded.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Iterator, Mapping
from datetime import datetime
from email.utils import parseaddr
from typing import Any, ClassVar
from urllib.parse import urlsplit

import requests
from anymail.signals import AnymailTrackingEvent
from anymail.utils import UNSET, get_anymail_setting
from django.utils.dateparse import parse_datetime

from ..addresses import normalize

USER_AGENT = "wagtail-maillog status fetcher"


class FetchError(Exception):
    """The ESP's status API could not be asked, or answered with an error."""

    def __init__(self, message: str, status_code: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.body = body  # the ESP's answer, parsed from JSON where it was JSON


class StatusFetcher:
    """Ask one ESP about (ESP message id, address) pairs.

    ``options`` are the connector's ``OPTIONS`` (the kwargs of its anymail
    backend). Settings missing from them are read the way anymail reads them
    (``ANYMAIL["<ESP>_<NAME>"]``, ``ANYMAIL_<ESP>_<NAME>``, ...), so a
    fetcher talks to the same account and API URL as the backend that sent.
    """

    #: anymail's name of the ESP: the ``esp_name`` the events are stored under.
    esp_name: ClassVar[str] = ""

    def accepted(
        self,
        addresses: Collection[str],
        *,
        from_email: str,
        since: datetime,
        until: datetime,
    ) -> dict[str, str] | None:
        """Which of ``addresses`` the ESP accepted a message from ``from_email`` for
        between ``since`` and ``until``: {address: ESP message id}, as anymail's send
        would have answered. None: this ESP cannot tell (the default).

        Asked about a batch whose hand-over was interrupted (outbox/interrupted.py).
        """
        return None

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        self.options: dict[str, Any] = dict(options or {})
        timeout = self.options.get("timeout")
        if timeout is None:
            timeout = self.setting("requests_timeout", default=30, esp=False)
        self.timeout: float = float(timeout)
        self.session = requests.Session()
        self.session.headers["User-Agent"] = USER_AGENT

    def setting(
        self, name: str, default: Any = UNSET, *, allow_bare: bool = False, esp: bool = True
    ) -> Any:
        """An option of the connector, else anymail's setting for this ESP."""
        return get_anymail_setting(
            name,
            default=default,
            esp_name=self.esp_name if esp else None,
            kwargs=dict(self.options),  # anymail pops what it reads
            allow_bare=allow_bare,
        )

    def fetch(
        self, items: list[tuple[str, str]], *, from_emails: Mapping[str, str] | None = None
    ) -> Iterator[AnymailTrackingEvent]:
        """Yield the events the ESP reports for these (ESP message id, address) pairs.

        ``from_emails`` maps an ESP message id to the message's sender, for
        ESPs whose API needs the sending domain (Mailgun). Events about
        other recipients of the same message are not yielded. Raises
        :class:`FetchError` when the ESP cannot be asked.
        """
        raise NotImplementedError

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> StatusFetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get_json(
        self,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        missing_ok: bool = True,
    ) -> Any:
        """GET ``url`` and return its JSON; None for an HTTP 404 when ``missing_ok``."""
        try:
            response = self.session.get(
                url, params=params, headers=headers, auth=auth, timeout=self.timeout
            )
        except requests.RequestException as exc:
            raise FetchError(f"{self.esp_name}: GET {_safe(url)} failed: {exc}") from exc
        if response.status_code == 404 and missing_ok:
            return None
        if response.status_code != 200:
            raise FetchError(
                f"{self.esp_name}: HTTP {response.status_code} from GET {_safe(url)}: "
                f"{response.text[:300]}",
                status_code=response.status_code,
                body=_json_or_none(response),
            )
        try:
            return response.json()
        except ValueError as exc:
            raise FetchError(
                f"{self.esp_name}: GET {_safe(url)} answered something that is not JSON",
                status_code=response.status_code,
            ) from exc


def addresses_by_id(items: Iterable[tuple[str, str]]) -> dict[str, set[str]]:
    """{ESP message id: its addresses, normalised}: one API call per message id."""
    wanted: dict[str, set[str]] = defaultdict(set)
    for message_id, address in items:
        if message_id:
            wanted[message_id].add(normalize(address))
    return dict(wanted)


def domain_of(address: str) -> str:
    """The domain of an address, with or without a display name ("" if none)."""
    addr_spec = parseaddr(address or "")[1]
    return addr_spec.rpartition("@")[2].lower() if "@" in addr_spec else ""


def same_origin(url: str, base: str) -> bool:
    """Whether ``url`` is on the host of ``base`` (credentials go nowhere else)."""
    a, b = urlsplit(url), urlsplit(base)
    return (a.scheme, a.netloc) == (b.scheme, b.netloc)


def parse_timestamp(value: Any) -> datetime | None:
    """An ISO 8601 time of an ESP's answer; None when missing or unreadable."""
    try:
        return parse_datetime(str(value)) if value else None
    except ValueError:
        return None


def _json_or_none(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _safe(url: str) -> str:
    """The URL without its query string (it may hold ids, never secrets, but is long)."""
    return url.split("?", 1)[0]
