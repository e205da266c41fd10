"""The deliverability rollup (issue 21.2): its counts are what the log says.

Mail goes out through anymail's real Postmark and Mailgun backends to the
loopback fake ESP, directly and through the outbox; the ESPs' events come back
through anymail's webhook views, replayed, repeated and out of order. The
expected figures are counted here, from the list of what was sent and posted,
without the rollup's code.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from django.contrib.auth.models import User
from django.core.mail import EmailMessage, get_connection
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django_q.models import Schedule

from tests.utils import post_json
from wagtail_maillog.deliverability import figures, rollup
from wagtail_maillog.models import METRICS, DailyCount, Event, Recipient, SendAttempt
from wagtail_maillog.outbox import worker
from wagtail_maillog.purge import purge
from wagtail_maillog.signals import threshold_crossed

if TYPE_CHECKING:
    from tests.fake_esp import FakeESP

pytest_plugins = ["tests.fake_esp"]
pytestmark = pytest.mark.django_db(transaction=True)

POSTMARK = "/anymail/postmark/tracking/"
MAILGUN = "/anymail/mailgun/tracking/"
MAILGUN_KEY = "mailgun-test-signing-key"  # ANYMAIL of tests/settings.py
TODAY = date.today()
DAY1 = datetime.combine(TODAY, datetime.min.time(), UTC) + timedelta(hours=10)
DAY2 = DAY1 + timedelta(days=1)

PM_PEOPLE = ["ann@gmail.com", "bob@outlook.com", "cy@club.example", "di@elsewhere.org"]
MG_PEOPLE = ["eve@gmail.com", "fay@gmail.com", "gus@yahoo.com", "hal@other.net", "ida@club.example"]


@pytest.fixture
def esp(fake_esp: FakeESP, settings: Any) -> FakeESP:
    settings.WAGTAIL_MAILLOG = {
        "WEBHOOK_ESPS": ["postmark", "mailgun"],
        "DELIVERABILITY_DOMAINS": ["Club.Example"],
        "DELIVERABILITY_MIN_VOLUME": 1,
        "CONNECTORS": {
            "news": {
                "BACKEND": "anymail.backends.mailgun.EmailBackend",
                "OPTIONS": {"api_key": "mg-key", "api_url": fake_esp.mailgun_api_url},
            },
        },
        "DEFAULT_CONNECTOR": "news",
    }
    return fake_esp


def send_postmark(fake: FakeESP, to: str, source: str = "system") -> None:
    connection = get_connection(
        "anymail.backends.postmark.EmailBackend",
        server_token="pm-token",
        api_url=fake.postmark_api_url,
    )
    EmailMessage("Hello", "Body", "site@example.com", [to], connection=connection).send()


def send_mailgun_direct(fake: FakeESP, to: list[str]) -> None:
    connection = get_connection(
        "anymail.backends.mailgun.EmailBackend", api_key="mg-key", api_url=fake.mailgun_api_url
    )
    EmailMessage("News", "Body", "news@mg.example.com", to, connection=connection).send()


def send_mailgun_outbox(to: str) -> None:
    connection = get_connection("wagtail_maillog.outbox.backend.OutboxBackend")
    EmailMessage("Queued", "Body", "news@mg.example.com", [to], connection=connection).send()
    worker.process_outbox(time_budget=20)


def esp_id(address: str) -> str:
    return Recipient.objects.get(address=address).esp_message_id


def postmark(kind: str, address: str, at: datetime, **extra: Any) -> dict[str, Any]:
    record, field, more = {
        "delivered": ("Delivery", "DeliveredAt", {}),
        "bounced": ("Bounce", "BouncedAt", {"Type": "HardBounce", "ID": 7}),
        "deferred": ("Bounce", "BouncedAt", {"Type": "Transient", "ID": 8}),
        "complained": ("SpamComplaint", "BouncedAt", {"Type": "SpamComplaint", "ID": 9}),
        "opened": ("Open", "ReceivedAt", {}),
        "clicked": ("Click", "ReceivedAt", {"OriginalLink": "https://example.com/"}),
    }[kind]
    iso = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "RecordType": record,
        "MessageID": esp_id(address),
        "Recipient": address,
        "Email": address,
        field: iso,
        "Metadata": {},
        **more,
        **extra,
    }


def mailgun(kind: str, address: str, at: datetime, n: int) -> dict[str, Any]:
    event, severity = {
        "delivered": ("delivered", None),
        "bounced": ("failed", "permanent"),
        "deferred": ("failed", "temporary"),
        "complained": ("complained", None),
        "unsubscribed": ("unsubscribed", None),
        "opened": ("opened", None),
        "clicked": ("clicked", None),
    }[kind]
    data: dict[str, Any] = {
        "event": event,
        "id": f"mg-{kind}-{address}-{n}",
        "timestamp": at.timestamp(),
        "recipient": address,
        "message": {"headers": {"message-id": esp_id(address).strip("<>")}},
    }
    if severity:
        data["severity"] = severity
        data["delivery-status"] = {"message": "x", "description": "", "code": 550}
    token = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:50]
    stamp = "1793982830"
    signature = hmac.new(MAILGUN_KEY.encode(), f"{stamp}{token}".encode(), hashlib.sha256)
    return {
        "signature": {"timestamp": stamp, "token": token, "signature": signature.hexdigest()},
        "event-data": data,
    }


class Script:
    """What was posted, and what the figures should say, counted independently."""

    def __init__(self, client: Any, auth: dict[str, str]) -> None:
        self.client, self.auth = client, auth
        self.first: dict[tuple[str, str], date] = {}  # (address, metric) -> first event's day
        self.n = 0

    def post(self, esp: str, kind: str, address: str, at: datetime, times: int = 1) -> None:
        self.n += 1
        if esp == "Postmark":
            body, url = postmark(kind, address, at), POSTMARK
        else:
            body, url = mailgun(kind, address, at, self.n), MAILGUN
        for _ in range(times):  # an ESP's retry posts the very same body again
            response = post_json(self.client, url, body, self.auth)
            assert response.status_code == 200, response.content
        self.first.setdefault((address, kind), at.date())

    def expected(self, sent: dict[str, date], addresses: list[str]) -> dict[date, Counter]:
        days: dict[date, Counter] = {}
        for address in addresses:
            if address in sent:
                days.setdefault(sent[address], Counter())["sent"] += 1
        for (address, metric), day in self.first.items():
            if address in addresses:
                days.setdefault(day, Counter())[metric] += 1
        return days


def figures_by_day(slice: figures.Slice | None = None) -> dict[date, Counter]:
    period = figures.Period(TODAY - timedelta(days=1), TODAY + timedelta(days=2))
    found = {}
    for day, counts in figures.daily(period, slice or figures.Slice()):
        c = Counter({m: getattr(counts, m) for m in METRICS})
        c = +c  # drop zeros
        if c:
            found[day] = c
    return found


def table() -> list[tuple]:
    return sorted(
        DailyCount.objects.values_list("day", "source", "connector", "esp_name", "domain", *METRICS)
    )


def run_script(esp: FakeESP, client: Any, auth: dict[str, str]) -> Script:
    for address in PM_PEOPLE:
        send_postmark(esp, address)
    send_mailgun_direct(esp, MG_PEOPLE[:3])
    for address in MG_PEOPLE[3:]:
        send_mailgun_outbox(address)
    assert Recipient.objects.filter(esp_message_id="").count() == 0

    s = Script(client, auth)
    # Postmark: out of order (a click before its open, an open before its delivery),
    # an ESP's retries of the same body, a second open the next day.
    s.post("Postmark", "clicked", "ann@gmail.com", DAY1 + timedelta(minutes=5))
    s.post("Postmark", "opened", "ann@gmail.com", DAY1 + timedelta(minutes=4), times=2)
    s.post("Postmark", "delivered", "ann@gmail.com", DAY1, times=3)
    s.post("Postmark", "opened", "ann@gmail.com", DAY2)
    s.post("Postmark", "deferred", "bob@outlook.com", DAY1)
    s.post("Postmark", "bounced", "bob@outlook.com", DAY2)
    s.post("Postmark", "delivered", "cy@club.example", DAY1)
    s.post("Postmark", "complained", "cy@club.example", DAY2, times=2)
    s.post("Postmark", "delivered", "di@elsewhere.org", DAY2)
    # Mailgun (direct and through the outbox).
    s.post("Mailgun", "delivered", "eve@gmail.com", DAY1)
    s.post("Mailgun", "unsubscribed", "eve@gmail.com", DAY2, times=2)
    s.post("Mailgun", "bounced", "fay@gmail.com", DAY1)
    s.post("Mailgun", "delivered", "gus@yahoo.com", DAY1)
    s.post("Mailgun", "opened", "gus@yahoo.com", DAY1)
    s.post("Mailgun", "opened", "gus@yahoo.com", DAY1 + timedelta(hours=1))
    s.post("Mailgun", "clicked", "gus@yahoo.com", DAY2)
    s.post("Mailgun", "deferred", "hal@other.net", DAY1)
    s.post("Mailgun", "deferred", "hal@other.net", DAY1 + timedelta(hours=2))
    s.post("Mailgun", "delivered", "hal@other.net", DAY2)
    s.post("Mailgun", "delivered", "ida@club.example", DAY1)
    return s


def sent_days() -> dict[str, date]:
    return {r.address: r.created_at.date() for r in Recipient.objects.all()}


def test_figures_equal_what_was_sent_and_posted(esp, client, webhook_auth):
    s = run_script(esp, client, webhook_auth)
    rollup.catch_up()
    assert DailyCount.objects.count() == 0  # the first run only sets the horizon
    rollup.catch_up()

    everyone = PM_PEOPLE + MG_PEOPLE
    assert figures_by_day() == s.expected(sent_days(), everyone)
    # Per ESP, per recipient domain ("" is every domain not counted on its own).
    assert figures_by_day(figures.Slice(connector="Postmark")) == s.expected(sent_days(), PM_PEOPLE)
    assert figures_by_day(figures.Slice(connector="news")) == s.expected(sent_days(), MG_PEOPLE[3:])
    gmail = [a for a in everyone if a.endswith("@gmail.com")]
    assert figures_by_day(figures.Slice(domain="gmail.com")) == s.expected(sent_days(), gmail)
    club = [a for a in everyone if a.endswith("@club.example")]
    assert figures_by_day(figures.Slice(domain="club.example")) == s.expected(sent_days(), club)
    other = ["di@elsewhere.org", "hal@other.net"]
    assert figures_by_day(figures.Slice(domain="")) == s.expected(sent_days(), other)
    assert set(figures.choices("domain")) == {
        "",
        "gmail.com",
        "outlook.com",
        "yahoo.com",
        "club.example",
    }

    # The rates over the two days, from the independent count.
    total = Counter()
    for counts in s.expected(sent_days(), everyone).values():
        total.update(counts)
    counts = figures.totals(figures.Period(TODAY, TODAY + timedelta(days=1)))
    assert counts.rate(figures.RATES_BY_KEY["bounce"]) == total["bounced"] / total["sent"]
    assert (
        counts.rate(figures.RATES_BY_KEY["complaint"]) == total["complained"] / total["delivered"]
    )
    assert counts.rate(figures.RATES_BY_KEY["delivered"]) == total["delivered"] / total["sent"]

    # The page's own numbers (its CSV) and its rates say the same, per day and per ESP.
    admin = Client()
    admin.force_login(User.objects.create_superuser("boss", "boss@example.com", "pw"))
    for connector, people in (("", everyone), ("Postmark", PM_PEOPLE), ("news", MG_PEOPLE[3:])):
        expected = s.expected(sent_days(), people)
        response = admin.get(
            reverse("wagtail_maillog_deliverability:csv"),
            {"start": TODAY, "end": TODAY + timedelta(days=1), "connector": connector},
        )
        assert response.status_code == 200
        rows = list(csv.DictReader(io.StringIO(response.content.decode())))
        assert [r["day"] for r in rows] == [TODAY.isoformat(), (TODAY + timedelta(1)).isoformat()]
        for row in rows:
            want = expected.get(date.fromisoformat(row["day"]), Counter())
            assert {m: int(row[m]) for m in METRICS} == {m: want[m] for m in METRICS}
            if want["sent"]:
                assert float(row["bounce_rate"]) == round(want["bounced"] / want["sent"], 6)
            else:
                assert row["bounce_rate"] == ""
    page = admin.get(
        reverse("wagtail_maillog_deliverability:index"),
        {"start": TODAY, "end": TODAY + timedelta(days=1)},
    )
    bounce = total["bounced"] / total["sent"] * 100
    assert f"{bounce:.1f}\u00a0%" in page.content.decode()

    # Nothing new: nothing changes, however often the task runs.
    before = table()
    rollup.catch_up()
    rollup.catch_up()
    assert table() == before


def test_counting_in_many_runs_equals_counting_once(esp, client, webhook_auth, monkeypatch):
    monkeypatch.setattr(rollup, "WINDOW", 3)  # several windows per run, too
    sends = Counter()
    s = Script(client, webhook_auth)
    for address in PM_PEOPLE:
        send_postmark(esp, address)
        rollup.catch_up()
        sends[address] += 1
    s.post("Postmark", "delivered", "ann@gmail.com", DAY1)
    rollup.catch_up()
    s.post("Postmark", "opened", "ann@gmail.com", DAY1)
    s.post("Postmark", "delivered", "bob@outlook.com", DAY1)
    rollup.catch_up()
    s.post("Postmark", "opened", "ann@gmail.com", DAY2)  # a second open: not counted again
    s.post("Postmark", "delivered", "ann@gmail.com", DAY1, times=2)  # a replay
    rollup.catch_up()
    rollup.catch_up()
    incremental = table()
    assert figures_by_day() == s.expected(sent_days(), PM_PEOPLE)

    rollup.rebuild(everything=True)
    rollup.catch_up()
    assert table() == incremental


def test_purge_leaves_the_figures_and_rebuild_keeps_purged_days(
    esp, client, webhook_auth, settings
):
    s = run_script(esp, client, webhook_auth)
    rollup.catch_up()
    rollup.catch_up()
    before = table()
    expected = s.expected(sent_days(), PM_PEOPLE + MG_PEOPLE)
    assert figures_by_day() == expected

    purge(before=DAY2 + timedelta(days=30))  # the whole log goes
    assert not Event.objects.exists() and not Recipient.objects.exists()
    rollup.catch_up()
    assert table() == before
    assert figures_by_day() == expected

    # A rebuild recounts only the days from --since (the log no longer holds the
    # days before whole): tomorrow's counts are recounted from an empty log.
    call_command("maillog_rollup", "--rebuild", "--since", (TODAY + timedelta(days=1)).isoformat())
    assert table() == [row for row in before if row[0] <= TODAY]
    # Without --since: the days after the purge's cutoff.
    settings.WAGTAIL_MAILLOG = {**settings.WAGTAIL_MAILLOG, "RETENTION_DAYS": 1}
    assert rollup.default_since() == TODAY
    call_command("maillog_rollup", "--rebuild")
    assert table() == [row for row in before if row[0] < TODAY]


def test_an_attempt_in_progress_holds_the_send_count_back(esp, client, webhook_auth):
    send_postmark(esp, "ann@gmail.com")
    attempt = SendAttempt.objects.get()
    # A hand-over that started before and has not ended: its outcome is not known yet.
    SendAttempt.objects.filter(pk=attempt.pk).update(outcome=SendAttempt.Outcome.STARTED)
    send_postmark(esp, "bob@outlook.com")
    rollup.catch_up()
    rollup.catch_up()
    assert figures.totals(figures.Period(TODAY, TODAY)).sent == 0
    SendAttempt.objects.filter(pk=attempt.pk).update(outcome=SendAttempt.Outcome.SENT)
    rollup.catch_up()
    assert figures.totals(figures.Period(TODAY, TODAY)).sent == 2


def test_threshold_crossed_is_sent_once_per_crossing(esp, client, webhook_auth):
    heard: list[dict[str, Any]] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        heard.append({k: kwargs[k] for k in ("rate", "level", "threshold")})

    threshold_crossed.connect(receiver)
    try:
        s = Script(client, webhook_auth)
        people = [f"p{i}@gmail.com" for i in range(12)]
        for address in people:
            send_postmark(esp, address)
        now = datetime.now(UTC)
        s.post("Postmark", "bounced", people[0], now)  # 1 of 12: 8.3 %, over SES's 5 %
        for _ in range(2):
            rollup.catch_up()
        assert heard == [{"rate": "bounce", "level": "warning", "threshold": 0.05}]
        rollup.catch_up()
        assert len(heard) == 1  # still crossed: not said again
        s.post("Postmark", "bounced", people[1], now)  # 2 of 12: 16.7 %, over 10 %
        rollup.catch_up()
        rollup.catch_up()
        assert heard[1:] == [{"rate": "bounce", "level": "critical", "threshold": 0.10}]
    finally:
        threshold_crossed.disconnect(receiver)


def test_a_failing_receiver_does_not_stop_the_count(esp, client, webhook_auth, caplog):
    def broken(sender: Any, **kwargs: Any) -> None:
        raise RuntimeError("chat is down")

    threshold_crossed.connect(broken)
    try:
        people = [f"p{i}@gmail.com" for i in range(5)]
        for address in people:
            send_postmark(esp, address)
        Script(client, webhook_auth).post("Postmark", "bounced", people[0], datetime.now(UTC))
        rollup.catch_up()
        rollup.catch_up()  # counts the bounce: 20 %, crossed
    finally:
        threshold_crossed.disconnect(broken)
    assert figures.totals(figures.Period(TODAY, TODAY)).bounced == 1
    assert "A threshold_crossed receiver failed" in caplog.text
    assert rollup.RollupState.objects.get().crossed == {"bounce": "critical"}


def test_the_task_is_scheduled_every_minute():
    schedule = Schedule.objects.get(func=rollup.__name__ + ".catch_up")
    assert schedule.schedule_type == Schedule.MINUTES and schedule.minutes == 1


def test_command_counts_and_refuses_bad_input(esp, client, webhook_auth, capsys):
    from django.core.management.base import CommandError

    send_postmark(esp, "ann@gmail.com")
    call_command("maillog_rollup")
    call_command("maillog_rollup")
    assert figures.totals(figures.Period(TODAY, TODAY)).sent == 1
    with pytest.raises(CommandError):
        call_command("maillog_rollup", "--rebuild", "--since", "yesterday")
    with pytest.raises(CommandError):
        call_command("maillog_rollup", "--all")
