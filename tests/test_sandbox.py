"""The simulated ESP: real anymail backend flow, real tracking signal."""

import pytest
from django.core.mail import send_mail
from django.test import override_settings
from django_q.models import Schedule

from wagtail_maillog.models import Event, Recipient
from wagtail_maillog.sandbox import emit, plan_events
from wagtail_maillog.status import Status

pytestmark = pytest.mark.django_db

SANDBOX = "wagtail_maillog.sandbox.SandboxBackend"


@override_settings(EMAIL_BACKEND=SANDBOX, WAGTAIL_MAILLOG={"SANDBOX_EVENT_DELAY": 0})
def test_each_domain_ends_in_its_status():
    addresses = [
        "ann@bounce.example",
        "bo@invalid.example",
        "cy@spam.example",
        "di@unsubscribe.example",
        "ed@defer.example",
        "fi@reject.example",
        "gus@example.com",
    ]
    send_mail("Newsletter", "Body", "news@example.com", addresses)

    statuses = dict(Recipient.objects.values_list("address", "status"))
    assert statuses["ann@bounce.example"] == Status.BOUNCED
    assert statuses["bo@invalid.example"] == Status.INVALID
    assert statuses["cy@spam.example"] == Status.COMPLAINED
    assert statuses["di@unsubscribe.example"] == Status.UNSUBSCRIBED
    assert statuses["ed@defer.example"] == Status.DEFERRED
    assert statuses["fi@reject.example"] == Status.REJECTED
    assert statuses["gus@example.com"] in (Status.DELIVERED, Status.OPENED, Status.CLICKED)
    # one message id for every recipient, as Postmark and SparkPost do
    assert len(set(Recipient.objects.values_list("esp_message_id", flat=True))) == 1
    bounce = Event.objects.get(address="ann@bounce.example", event_type="bounced")
    assert bounce.mta_response.startswith("550 5.1.1")
    assert not Event.objects.filter(address="fi@reject.example").exists()


@override_settings(EMAIL_BACKEND=SANDBOX, WAGTAIL_MAILLOG={"SANDBOX_EVENT_DELAY": 5})
def test_delayed_events_wait_in_a_django_q_schedule_then_arrive():
    send_mail("Later", "Body", "news@example.com", ["late@bounce.example"])
    recipient = Recipient.objects.get()
    assert recipient.status == Status.QUEUED
    schedule = Schedule.objects.get(func="wagtail_maillog.sandbox.emit")
    assert schedule.schedule_type == Schedule.ONCE

    import ast

    emit(*ast.literal_eval(schedule.args))  # what the django-q2 scheduler runs
    recipient.refresh_from_db()
    assert recipient.status == Status.BOUNCED


def test_plans_are_reproducible_and_engagement_varies():
    plans = [plan_events(f"id-{i}", f"user{i}@example.com") for i in range(200)]
    assert plans == [plan_events(f"id-{i}", f"user{i}@example.com") for i in range(200)]
    kinds = {tuple(e["event_type"] for e in p) for p in plans}
    assert ("delivered",) in kinds and ("delivered", "opened") in kinds
    assert ("delivered", "opened", "clicked") in kinds
