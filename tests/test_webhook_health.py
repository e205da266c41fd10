"""Webhook health (issue 21, point 4): a silent webhook and refused requests are
seen on the dashboard and on the Webhooks page, through anymail's real views."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from tests.test_webhooks import POSTMARK, postmark
from tests.utils import client_for, denied, make_user, post_json, send_with_ids
from wagtail_maillog import webhook_health
from wagtail_maillog.models import Message, Recipient, WebhookRejection

pytestmark = pytest.mark.django_db

PAGE = "/admin/maillog/webhooks/"


def _handed_to_postmark(count: int, hours_ago: float) -> list[Recipient]:
    """``count`` mails Postmark took ``hours_ago`` (its ids pm-0, pm-1, ...)."""
    at = timezone.now() - timedelta(hours=hours_ago)
    ids = {f"r{i}@example.com": f"pm-{i}" for i in range(count)}
    message = send_with_ids(list(ids), ids)
    Message.objects.filter(pk=message.pk).update(esp_name="Postmark", created_at=at)
    message.recipients.update(created_at=at, status_at=at)
    return list(message.recipients.order_by("address"))


def test_mail_with_no_event_back_after_the_limit_is_a_silent_webhook(
    admin_client, client, webhook_auth
):
    _handed_to_postmark(6, hours_ago=7)
    silence = webhook_health.silent("Postmark")
    assert silence is not None and silence.mails == 6
    home = admin_client.get("/admin/").content.decode()
    assert "Postmark: none of the last 6 mails handed over more than 6 hours ago" in home
    page = admin_client.get(PAGE).content.decode()
    assert "No event for any of the last 6 mails handed over" in page

    # One event arrives: the webhook works.
    assert (
        post_json(
            client, POSTMARK, postmark("Delivery", "pm-3", "r3@example.com"), webhook_auth
        ).status_code
        == 200
    )
    assert webhook_health.silent("Postmark") is None
    assert 'id="maillog-webhooks-section"' not in admin_client.get("/admin/").content.decode()


@pytest.mark.parametrize(("count", "hours_ago"), [(4, 7), (6, 2)])
def test_too_few_or_too_recent_mails_say_nothing(count, hours_ago, settings):
    _handed_to_postmark(count, hours_ago)
    assert webhook_health.silent("Postmark") is None


def test_the_silence_limit_is_a_setting(settings):
    _handed_to_postmark(6, hours_ago=2)
    settings.WAGTAIL_MAILLOG = {**settings.WAGTAIL_MAILLOG, "WEBHOOK_SILENCE_HOURS": 1}
    assert webhook_health.silent("Postmark").mails == 6


def test_refused_requests_are_counted_per_esp_hour_and_reason(admin_client, client, webhook_auth):
    client.raise_request_exception = False
    bad_auth = {"HTTP_AUTHORIZATION": "Basic d3Jvbmc6d3Jvbmc="}
    event = postmark("Delivery", "pm-1", "x@example.com")
    assert post_json(client, POSTMARK, event, bad_auth).status_code == 400
    assert post_json(client, POSTMARK, event, bad_auth).status_code == 400
    malformed = client.post(
        POSTMARK, data="{not json", content_type="application/json", **webhook_auth
    )
    assert malformed.status_code == 400
    counts = {(r.esp_name, r.reason): r.count for r in WebhookRejection.objects.all()}
    assert counts == {("Postmark", "validation"): 2, ("Postmark", "malformed"): 1}
    assert webhook_health.refused("Postmark") == {"validation": 2, "malformed": 1}

    home = admin_client.get("/admin/").content.decode()
    assert "Postmark: 3 webhook requests were refused in the last 24 hours." in home
    page = admin_client.get(PAGE).content.decode()
    assert "2 · Failed authentication or signature" in page
    assert "1 · Malformed or empty payload" in page


def test_the_page_gives_each_url_the_last_event_and_the_day_s_events(
    admin_client, client, webhook_auth
):
    _handed_to_postmark(2, hours_ago=1)
    post_json(client, POSTMARK, postmark("Delivery", "pm-0", "r0@example.com"), webhook_auth)
    post_json(client, POSTMARK, postmark("Open", "pm-1", "r1@example.com"), webhook_auth)
    activity = webhook_health.activity("Postmark")
    assert activity.events == 2 and activity.last_event_at is not None
    page = admin_client.get(PAGE).content.decode()
    assert re.search(r"<h1[^>]*>.*?Webhooks", page, re.S)
    assert "<code>http://testserver/anymail/postmark/tracking/</code>" in page
    assert '<tr data-esp="Postmark">' in page
    assert "user:password@" in page  # tests/settings.py has a WEBHOOK_SECRET
    assert webhook_health.activity("SparkPost").events == 0


def test_week_old_counts_are_forgotten():
    now = timezone.now()
    webhook_health.note_refused("Postmark", "malformed", now=now - timedelta(days=8))
    webhook_health.note_refused("Postmark", "malformed", now=now)
    assert webhook_health.forget_old() == 1
    assert WebhookRejection.objects.get().hour.date() == now.date()


def test_only_who_may_see_the_log_sees_the_page_or_the_warning():
    _handed_to_postmark(6, hours_ago=7)
    outsider = client_for(make_user("outsider"))
    assert denied(outsider.get(PAGE))
    assert 'id="maillog-webhooks-section"' not in outsider.get("/admin/").content.decode()
    viewer = client_for(make_user("viewer", "view_message", "view_all_mail"))
    assert viewer.get(PAGE).status_code == 200
    assert 'id="maillog-webhooks-section"' in viewer.get("/admin/").content.decode()
