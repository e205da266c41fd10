"""Status fetchers, for real: anymail's Postmark and Mailgun backends send into a
loopback fake of their HTTP APIs, then ``catch_up`` asks the same fake."""

from __future__ import annotations

import base64
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest
from anymail.backends.postmark import EmailBackend as PostmarkBackend
from django.core.mail import EmailMessage
from django.test import override_settings
from django.utils import timezone

from tests.utils import post_json
from wagtail_maillog import label
from wagtail_maillog.fetchers import (
    CatchUpResult,
    FetchError,
    StatusFetcher,
    catch_up,
    fetcher_for,
    pending_recipients,
)
from wagtail_maillog.fetchers.mailgun import MailgunFetcher
from wagtail_maillog.fetchers.postmark import PostmarkFetcher
from wagtail_maillog.models import Event, Message, Recipient
from wagtail_maillog.outbox import worker
from wagtail_maillog.status import Status

if TYPE_CHECKING:
    from tests.fake_esp import FakeESP

pytest_plugins = ["tests.fake_esp"]
pytestmark = pytest.mark.django_db

OUTBOX = "wagtail_maillog.outbox.backend.OutboxBackend"
POSTMARK = "anymail.backends.postmark.EmailBackend"
MAILGUN = "anymail.backends.mailgun.EmailBackend"


class SubclassedPostmark(PostmarkBackend):
    """A site's own Postmark backend: it gets Postmark's fetcher."""


class NoEvents(StatusFetcher):
    esp_name = "Postmark"

    def fetch(self, items, *, from_emails=None):
        return iter(())


@pytest.fixture
def esp(fake_esp: FakeESP, settings) -> FakeESP:
    """The outbox with a Postmark and a Mailgun connector, both talking to the fake."""
    settings.EMAIL_BACKEND = OUTBOX
    settings.ANYMAIL = {**settings.ANYMAIL, "POSTMARK_SERVER_TOKEN": "not-this-one"}
    settings.WAGTAIL_MAILLOG = {
        "CONNECTORS": {
            "pm": {
                "BACKEND": POSTMARK,
                "OPTIONS": {"server_token": "pm-token", "api_url": fake_esp.postmark_api_url},
            },
            "mg": {
                "BACKEND": MAILGUN,
                "OPTIONS": {"api_key": "mg-key", "api_url": fake_esp.mailgun_api_url},
            },
            "smtp": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"},
        },
        "DEFAULT_CONNECTOR": "pm",
    }
    return fake_esp


def send(connector: str, to: list[str], subject: str = "Hello", **attrs) -> Message:
    """Queue in the outbox, let the worker hand it to the connector's real backend."""
    msg = EmailMessage(subject, "Body", "News <news@mg.example.com>", to)
    for name, value in attrs.items():
        setattr(msg, name, value)
    label(msg, connector=connector)
    msg.send()
    worker.process_outbox(time_budget=10)
    message = Message.objects.get(subject=subject)
    assert set(message.recipients.values_list("status", flat=True)) <= {
        Status.SENT,
        Status.QUEUED,
    }, "the fake ESP took the mail"
    return message


def esp_id(message: Message) -> str:
    ids = set(message.recipients.values_list("esp_message_id", flat=True))
    assert len(ids) == 1 and "" not in ids
    return ids.pop()


def statuses() -> dict[str, str]:
    return dict(Recipient.objects.values_list("address", "status"))


# -- Postmark -----------------------------------------------------------------


def test_postmark_events_move_statuses(esp):
    message = send("pm", ["ann@example.com", "bob@example.com", "cy@example.com"])
    mid = esp_id(message)
    esp.add_postmark_event(mid, "Delivered", "ann@example.com")
    esp.add_postmark_bounce(mid, "bob@example.com", bounce_id=4242)
    esp.add_postmark_event(mid, "Delivered", "cy@example.com")
    esp.add_postmark_event(mid, "Opened", "cy@example.com", "2026-03-02T11:00:00Z", Summary="Mail")

    result = catch_up(Recipient.objects.all())

    assert statuses() == {
        "ann@example.com": Status.DELIVERED,
        "bob@example.com": Status.BOUNCED,
        "cy@example.com": Status.OPENED,
    }
    bob = Recipient.objects.get(address="bob@example.com")
    assert bob.reason == "The server was unable to deliver your message."
    bounce = Event.objects.get(event_type="bounced")
    assert bounce.event_id == "4242" and bounce.esp_name == "Postmark"
    assert bounce.mta_response.startswith("smtp;550 5.1.1")
    assert bounce.raw["Bounce"]["Type"] == "HardBounce"
    delivered = Event.objects.get(address="ann@example.com")
    assert delivered.mta_response == "smtp;250 2.0.0 OK"
    assert delivered.timestamp.isoformat() == "2026-03-02T15:00:00.123456+00:00"
    assert result == CatchUpResult(asked=3, events=4, stored=4, changed=3)

    details = esp.requests_to("/messages/outbound/", "GET")
    assert [r.path for r in details] == [f"/messages/outbound/{mid}/details"]  # once per message
    assert details[0].headers["x-postmark-server-token"] == "pm-token"  # the connector's
    assert details[0].headers["accept"] == "application/json"
    assert esp.requests_to("/bounces/4242")[0].headers["x-postmark-server-token"] == "pm-token"


def test_each_event_is_stored_once_however_often_catch_up_runs(esp):
    mid = esp_id(send("pm", ["ann@example.com"]))
    esp.add_postmark_event(mid, "Transient", "ann@example.com")
    first = catch_up(Recipient.objects.all())
    assert statuses() == {"ann@example.com": Status.DEFERRED}

    esp.add_postmark_event(mid, "Delivered", "ann@example.com", "2026-03-02T12:00:00Z")
    second = catch_up(Recipient.objects.all())
    third = catch_up(Recipient.objects.all())

    assert (first.stored, second.stored, third.stored) == (1, 1, 0)
    assert (second.events, third.events) == (2, 2)
    assert list(Event.objects.order_by("pk").values_list("event_type", flat=True)) == [
        "deferred",
        "delivered",
    ]
    assert statuses() == {"ann@example.com": Status.DELIVERED}


def test_a_bounce_from_the_webhook_and_from_the_fetcher_is_stored_once(esp, client, webhook_auth):
    mid = esp_id(send("pm", ["bob@example.com"]))
    esp.add_postmark_bounce(mid, "bob@example.com", bounce_id=777)
    webhook = {
        "RecordType": "Bounce",
        "ID": 777,
        "Type": "HardBounce",
        "MessageID": mid,
        "Email": "bob@example.com",
        "BouncedAt": "2026-03-02T10:05:00Z",
        "Description": "The server was unable to deliver your message.",
        "Details": "smtp;550 5.1.1 The email account does not exist.",
    }
    response = post_json(client, "/anymail/postmark/tracking/", webhook, webhook_auth)
    assert response.status_code == 200

    result = catch_up(Recipient.objects.all())

    assert result.events == 1 and result.stored == 0
    assert Event.objects.count() == 1


def test_postmark_bounce_kinds_are_mapped_like_the_webhook(esp):
    mid = esp_id(send("pm", ["auto@example.com", "bad@example.com", "gone@example.com"]))
    esp.add_postmark_bounce(mid, "auto@example.com", 1, bounce_type="AutoResponder")
    esp.add_postmark_bounce(mid, "bad@example.com", 2, bounce_type="BadEmailAddress")
    esp.add_postmark_event(
        mid,
        "SubscriptionChanged",
        "gone@example.com",
        Origin="Recipient",
        SuppressSending="True",
        SuppressionReason="ManualSuppression",
    )

    catch_up(Recipient.objects.all())

    assert statuses() == {
        "auto@example.com": Status.DELIVERED,  # an auto-reply is no bounce
        "bad@example.com": Status.INVALID,
        "gone@example.com": Status.UNSUBSCRIBED,
    }


def test_only_the_asked_recipients_get_events(esp):
    mid = esp_id(send("pm", ["ann@example.com", "bob@example.com"]))
    esp.add_postmark_event(mid, "Delivered", "ann@example.com")
    esp.add_postmark_event(mid, "Delivered", "bob@example.com")

    result = catch_up(Recipient.objects.filter(address="ann@example.com"))

    assert result.asked == 1 and result.events == 1
    assert list(Event.objects.values_list("address", flat=True)) == ["ann@example.com"]
    assert statuses()["bob@example.com"] != Status.DELIVERED


@pytest.mark.parametrize("unknown_status", [404, 422])
def test_messages_the_esp_does_not_know_are_skipped(esp, unknown_status):
    esp.postmark_unknown_status = unknown_status  # 422 with ErrorCode 701: "not found"
    known = esp_id(send("pm", ["ann@example.com"], subject="Known"))
    send("pm", ["bob@example.com"], subject="Unknown")
    esp.add_postmark_event(known, "Delivered", "ann@example.com")

    result = catch_up(Recipient.objects.all())

    assert result.errors == {}
    assert result.asked == 2 and result.events == 1
    assert statuses() == {"ann@example.com": Status.DELIVERED, "bob@example.com": Status.SENT}
    assert len(esp.requests_to("/messages/outbound/")) == 2


def test_a_server_error_is_recorded_for_its_connector_and_the_others_go_on(esp):
    pm = esp_id(send("pm", ["ann@example.com"], subject="Postmark 1"))
    send("pm", ["bob@example.com"], subject="Postmark 2")
    mg = esp_id(send("mg", ["cy@example.com"], subject="Mailgun"))
    esp.add_postmark_event(pm, "Delivered", "ann@example.com")
    esp.add_mailgun_event(mg, "delivered", "cy@example.com")
    esp.fail_next(status=500, path="/messages/outbound/")

    result = catch_up(Recipient.objects.all())

    assert set(result.errors) == {"pm"}
    assert "HTTP 500" in result.errors["pm"] and "FetchError" in result.errors["pm"]
    assert statuses() == {
        "ann@example.com": Status.SENT,
        "bob@example.com": Status.SENT,
        "cy@example.com": Status.DELIVERED,
    }
    assert not Event.objects.filter(esp_name="Postmark").exists()
    assert result.asked == 1 and result.skipped == 2
    # after its error, the connector is asked no more in this run
    assert len(esp.requests_to("/messages/outbound/")) == 1


def test_an_esp_that_cannot_be_reached_is_an_error(esp, settings):
    send("pm", ["ann@example.com"])
    dead = type(esp)().start()
    url = dead.postmark_api_url
    dead.stop()  # nothing listens on this port any more
    settings.WAGTAIL_MAILLOG["CONNECTORS"]["pm"]["OPTIONS"]["api_url"] = url

    result = catch_up(Recipient.objects.all())

    assert "GET" in result.errors["pm"] and result.asked == 0 and result.skipped == 1


def test_a_slow_esp_times_out(esp, settings):
    send("pm", ["ann@example.com"])
    settings.WAGTAIL_MAILLOG["CONNECTORS"]["pm"]["OPTIONS"]["timeout"] = 0.3
    esp.fail_next(status=200, path="/messages/outbound/", delay=2)

    result = catch_up(Recipient.objects.all())

    assert "timed out" in result.errors["pm"].lower()


# -- Mailgun ------------------------------------------------------------------


def test_mailgun_events_follow_paging_and_map_failures(esp):
    to = ["ann@example.com", "bob@example.com", "cy@example.com", "di@example.com"]
    message = send("mg", to, merge_data={a: {"name": a[:3]} for a in to})
    mid = esp_id(message)
    assert mid.startswith("<") and mid.endswith("@mg.example.com>")
    assert len(esp.sent) == 1 and esp.sent[0].batch  # recipient-variables: one call
    esp.mailgun_page_size = 2
    esp.add_mailgun_event(mid, "accepted", "ann@example.com", 1772445600.0)
    esp.add_mailgun_event(mid, "delivered", "ann@example.com", 1772445601.0)
    esp.add_mailgun_event(
        mid,
        "failed",
        "bob@example.com",
        1772445602.0,
        severity="permanent",
        reason="bounce",
        **{"delivery-status": {"code": 550, "message": "5.1.1 No such user", "description": ""}},
    )
    esp.add_mailgun_event(
        mid,
        "failed",
        "cy@example.com",
        1772445603.0,
        severity="temporary",
        reason="generic",
        **{"delivery-status": {"code": 421, "message": "4.7.0 Try later", "description": ""}},
    )
    esp.add_mailgun_event(
        mid,
        "clicked",
        "di@example.com",
        1772445604.0,
        url="https://www.example.com/news",
        **{"client-info": {"user-agent": "Mozilla/5.0"}},
    )

    result = catch_up(Recipient.objects.all())

    assert statuses() == {
        "ann@example.com": Status.DELIVERED,
        "bob@example.com": Status.BOUNCED,
        "cy@example.com": Status.DEFERRED,
        "di@example.com": Status.CLICKED,
    }
    assert Recipient.objects.get(address="bob@example.com").reason == "5.1.1 No such user"
    click = Event.objects.get(event_type="clicked")
    assert click.click_url == "https://www.example.com/news"
    assert click.user_agent == "Mozilla/5.0" and click.esp_message_id == mid
    assert result.events == 5 and result.errors == {}

    pages = esp.requests_to("/v3/mg.example.com/events", "GET")
    assert len(pages) == 4  # 2 + 2 + 1 events, then the empty page
    assert pages[0].query["message-id"] == [mid.strip("<>")]
    assert all(r.basic_auth() == ("api", "mg-key") for r in pages)
    expected = "Basic " + base64.b64encode(b"api:mg-key").decode()
    assert pages[0].headers["authorization"] == expected


def test_mailgun_catch_up_twice_stores_events_once(esp):
    mid = esp_id(send("mg", ["ann@example.com"]))
    esp.add_mailgun_event(mid, "delivered", "ann@example.com")
    esp.add_mailgun_event(mid, "opened", "ann@example.com", 1772449200.0)

    catch_up(Recipient.objects.all())
    again = catch_up(Recipient.objects.all())

    assert again.events == 2 and again.stored == 0
    assert Event.objects.count() == 2
    assert statuses() == {"ann@example.com": Status.OPENED}


def test_mailgun_sender_domain_option_and_unknown_domain(esp, settings):
    mid = esp_id(send("mg", ["ann@example.com"]))
    esp.add_mailgun_event(mid, "delivered", "ann@example.com")
    esp.mailgun_domains = {"mg.example.com"}
    options = settings.WAGTAIL_MAILLOG["CONNECTORS"]["mg"]["OPTIONS"]

    options["sender_domain"] = "typo.example.com"
    failed = catch_up(Recipient.objects.all())
    assert "typo.example.com" in failed.errors["mg"] and "404" in failed.errors["mg"]
    assert statuses() == {"ann@example.com": Status.QUEUED}

    options["sender_domain"] = "mg.example.com"
    assert catch_up(Recipient.objects.all()).errors == {}
    assert statuses() == {"ann@example.com": Status.DELIVERED}


def test_mailgun_rejected_event_without_recipient_uses_the_to_header(esp):
    mid = esp_id(send("mg", ["ann@example.com"]))
    item = esp.add_mailgun_event(
        mid, "rejected", "", reject={"reason": "Sandbox subdomains are for test purposes only"}
    )
    item["message"]["headers"]["to"] = "Ann <ann@example.com>"

    catch_up(Recipient.objects.all())

    event = Event.objects.get()
    assert event.event_type == "rejected" and event.address == "ann@example.com"
    assert event.description == "Sandbox subdomains are for test purposes only"
    assert statuses() == {"ann@example.com": Status.REJECTED}


# -- catch_up itself ----------------------------------------------------------


def test_progress_is_reported_after_each_chunk(esp):
    mid = esp_id(send("pm", [f"user{i}@example.com" for i in range(5)]))
    for i in range(5):
        esp.add_postmark_event(mid, "Delivered", f"user{i}@example.com")
    calls: list[tuple[int, int]] = []

    result = catch_up(Recipient.objects.all(), progress=lambda *a: calls.append(a), chunk=2)

    assert calls == [(2, 5), (4, 5), (5, 5)]
    assert result.asked == 5 and result.stored == 5
    assert len(esp.requests_to("/messages/outbound/")) == 3  # one per message and chunk


def test_nothing_to_ask_reports_done(esp):
    calls: list[tuple[int, int]] = []
    assert catch_up(Recipient.objects.all(), progress=lambda *a: calls.append(a)) == (
        CatchUpResult()
    )
    assert calls == [(0, 0)]


def test_connectors_without_a_fetcher_are_skipped(esp):
    msg = EmailMessage("Local", "Body", "site@example.com", ["ann@example.com"])
    label(msg, connector="smtp")
    msg.send()
    worker.process_outbox(time_budget=10)
    Recipient.objects.update(esp_message_id="local-1")  # as if the backend had said so

    result = catch_up(Recipient.objects.all())

    assert result.skipped == 1 and result.asked == 0 and result.errors == {}
    assert esp.requests == []  # the ESP was not asked


def test_mail_of_another_esp_is_not_asked(esp):
    send("pm", ["ann@example.com"])
    Message.objects.update(connector="mg")  # the connector now points at Mailgun

    result = catch_up(Recipient.objects.all())

    assert result.skipped == 1 and result.asked == 0
    assert esp.requests_to("/v3/", "GET") == []


def test_pending_recipients_are_recent_unfinished_mail_with_an_esp_id(esp):
    mid = esp_id(send("pm", ["ann@example.com", "bob@example.com", "cy@example.com"]))
    Recipient.objects.filter(address="bob@example.com").update(status=Status.DELIVERED)
    long_ago = timezone.now() - timedelta(days=10)
    Recipient.objects.filter(address="cy@example.com").update(created_at=long_ago)
    esp.add_postmark_event(mid, "Delivered", "ann@example.com")

    assert list(pending_recipients().values_list("address", flat=True)) == []  # too new
    pending = pending_recipients(min_age=timedelta(0))
    assert list(pending.values_list("address", flat=True)) == ["ann@example.com"]
    assert catch_up(pending).asked == 1
    assert statuses()["ann@example.com"] == Status.DELIVERED


# -- finding the fetcher ------------------------------------------------------


def test_fetcher_for_reads_connectors_and_the_fetchers_setting(esp, settings):
    pm = fetcher_for("pm")
    assert isinstance(pm, PostmarkFetcher)
    assert pm.server_token == "pm-token" and pm.api_url == esp.postmark_api_url
    mg = fetcher_for("mg")
    assert isinstance(mg, MailgunFetcher) and mg.api_url == esp.mailgun_api_url + "/"
    assert fetcher_for("smtp") is None
    assert fetcher_for("nope") is None

    connectors = settings.WAGTAIL_MAILLOG["CONNECTORS"]
    connectors["own"] = {"BACKEND": "tests.test_fetchers.SubclassedPostmark"}
    assert isinstance(fetcher_for("own"), PostmarkFetcher)  # found through its base class
    assert fetcher_for("own").server_token == "not-this-one"  # no OPTIONS: anymail settings

    settings.WAGTAIL_MAILLOG["FETCHERS"] = {
        POSTMARK: "tests.test_fetchers.NoEvents",
        MAILGUN: None,
    }
    assert isinstance(fetcher_for("pm"), NoEvents)
    assert fetcher_for("mg") is None


def test_a_fetcher_that_cannot_be_built_is_an_error(esp, settings):
    send("pm", ["ann@example.com"])
    settings.WAGTAIL_MAILLOG["FETCHERS"] = {POSTMARK: "tests.test_fetchers.Missing"}

    result = catch_up(Recipient.objects.all())

    assert "Missing" in result.errors["pm"] and result.skipped == 1


def test_mail_sent_straight_through_email_backend_uses_anymail_settings(fake_esp, settings):
    settings.EMAIL_BACKEND = POSTMARK
    settings.ANYMAIL = fake_esp.anymail_settings(POSTMARK_SERVER_TOKEN="site-token")
    EmailMessage("Direct", "Body", "site@example.com", ["ann@example.com"]).send()
    message = Message.objects.get()
    assert message.connector == ""
    fake_esp.add_postmark_event(esp_id(message), "Delivered", "ann@example.com")

    result = catch_up(Recipient.objects.all())

    assert result.errors == {} and statuses() == {"ann@example.com": Status.DELIVERED}
    assert fake_esp.requests_to("/messages/")[0].headers["x-postmark-server-token"] == "site-token"


def test_mail_sent_through_the_default_mailer_uses_its_options(fake_esp, settings):
    settings.MAILERS = {
        "default": {
            "BACKEND": POSTMARK,
            "OPTIONS": {"server_token": "mailer-token", "api_url": fake_esp.postmark_api_url},
        }
    }
    fetcher = fetcher_for("")
    assert isinstance(fetcher, PostmarkFetcher)
    assert (fetcher.server_token, fetcher.api_url) == ("mailer-token", fake_esp.postmark_api_url)


def test_fetch_error_carries_the_http_status(fake_esp):
    fake_esp.fail_next(status=503, retry_after=30)
    with override_settings(ANYMAIL=fake_esp.anymail_settings()):
        fetcher = PostmarkFetcher()
    with pytest.raises(FetchError) as caught:
        list(fetcher.fetch([("some-id", "ann@example.com")]))
    assert caught.value.status_code == 503 and "HTTP 503" in str(caught.value)
