"""Mailings: audiences, queuing through the outbox, batching, unsubscribe, cancel.

The mailing is sent for real: the django-q2 task runs in-process (sync mode of
tests/settings.py), the outbox worker hands it to anymail's test backend (which
records each ESP call in ``mail.outbox``) or to the sandbox ESP, whose events
come through anymail's real tracking signal.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.core import mail, signing
from django.db.models import F
from django.test import Client
from django.utils import timezone

from tests.testapp.models import Member
from wagtail_maillog.addresses.health import set_status
from wagtail_maillog.mailings import audiences, content, results, sending, unsubscribe
from wagtail_maillog.models import (
    Address,
    AddressStatus,
    Mailing,
    MailingList,
    MailingListMember,
    MailingState,
    OutboxItem,
    Recipient,
)
from wagtail_maillog.outbox import worker
from wagtail_maillog.status import Status

pytestmark = pytest.mark.django_db

TEST_ESP = "anymail.backends.test.EmailBackend"


def connectors(settings, backend: str = TEST_ESP, **mailing: object) -> None:
    spec = {"BACKEND": backend, **({"MAILING": mailing} if mailing else {})}
    settings.WAGTAIL_MAILLOG = {
        "CONNECTORS": {"newsletter": spec},
        "DEFAULT_CONNECTOR": "newsletter",
        "SANDBOX_EVENT_DELAY": 0,
    }


@pytest.fixture
def members():
    """Seven confirmed members, and one of each reason to be left out."""
    confirmed = [
        Member.objects.create(name=f"Member {i}", email=f"m{i}@example.com") for i in range(7)
    ]
    set_status([(m.email, AddressStatus.CONFIRMED, "test") for m in confirmed])
    Member.objects.create(name="No address", email="")
    Member.objects.create(name="Never asked", email="new@example.com")
    Address.objects.filter(address="new@example.com").delete()
    bounced = Member.objects.create(name="Bounced", email="gone@example.com")
    set_status([(bounced.email, AddressStatus.BOUNCED, "test")])
    asked = Member.objects.create(name="Asked", email="asked@example.com")
    set_status([(asked.email, AddressStatus.REQUESTED, "test")])
    return confirmed


@pytest.fixture
def held():
    """Mail stays in the outbox: no worker is woken (as if none was running yet)."""
    from django.core.cache import cache

    cache.set(worker.WAKE_KEY, 1, timeout=300)


def draft(**kwargs: object) -> Mailing:
    values = {
        "subject": "News for {{ name }}",
        "body": '<p>Hello {{ name }},</p><p>our <a href="/news/">news</a>.</p>',
        "audience": "members",
    }
    values.update(kwargs)
    return Mailing.objects.create(**values)


def send_now(mailing: Mailing, capture) -> Mailing:
    """Press "send": the queuing task runs when the request's transaction commits."""
    with capture(execute=True):
        sending.send(mailing)
    mailing.refresh_from_db()
    return mailing


def test_breakdown_counts_members_per_address_status(members):
    audience = audiences.get("members")
    counts = audience.breakdown()
    assert counts["confirmed"] == 7
    assert counts[audiences.NO_ADDRESS] == 1
    assert counts[audiences.NOT_KNOWN] == 1
    assert counts[AddressStatus.BOUNCED] == 1
    assert counts[AddressStatus.REQUESTED] == 1
    assert audience.distinct_confirmed() == 7


class ListedAudience(audiences.Audience):
    """A non-ORM audience (a subclass gives only entries()): the fallback counting."""

    key, label = "listed", "Listed"

    def __init__(self, entries: list[audiences.Entry]) -> None:
        self._entries = entries

    def entries(self, chunk: int):
        for start in range(0, len(self._entries), chunk):
            yield self._entries[start : start + chunk]


def test_a_non_orm_audience_counts_as_the_set_based_one(members, monkeypatch):
    """Same breakdown as QuerySetAudience, looking statuses up one chunk at a time."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    members_audience = audiences.get("members")
    listed = ListedAudience(
        [e for chunk in members_audience.entries(100) for e in chunk]
        + [audiences.Entry("m0@example.com", "Partner")]  # a shared address
    )
    monkeypatch.setattr(audiences, "CHUNK", 3)
    with CaptureQueriesContext(connection) as queries:
        counts = listed.breakdown()
    expected = members_audience.breakdown()
    expected[AddressStatus.CONFIRMED] += 1
    assert counts == expected
    assert len(queries) == 4  # 12 members in chunks of 3: one status query per chunk
    assert listed.distinct_confirmed() == 7


def test_members_sharing_an_address_are_mailed_once(
    settings, members, django_capture_on_commit_callbacks
):
    connectors(settings)
    Member.objects.create(name="Partner", email="M0@example.com ")
    assert audiences.get("members").distinct_confirmed() == 7
    mailing = send_now(draft(), django_capture_on_commit_callbacks)
    assert mailing.queued_count == 7
    assert mailing.skipped[audiences.DUPLICATE] == 1
    assert sending.recipients_of(mailing).filter(address="m0@example.com").count() == 1


def test_batch_send_one_esp_call_per_chunk_with_merge_data(
    settings, members, held, django_capture_on_commit_callbacks
):
    connectors(settings, BATCH_SIZE=3)
    mailing = send_now(draft(), django_capture_on_commit_callbacks)
    assert mailing.state == MailingState.QUEUED
    assert mailing.member_count == 11
    assert mailing.queued_count == 7
    assert mailing.skipped == {
        audiences.NO_ADDRESS: 1,
        audiences.NOT_KNOWN: 1,
        AddressStatus.BOUNCED: 1,
        AddressStatus.REQUESTED: 1,
    }
    assert OutboxItem.objects.count() == 3  # 7 recipients in chunks of 3
    assert Recipient.objects.filter(status=Status.PENDING).count() == 7

    worker.process_outbox(time_budget=10)

    assert len(mail.outbox) == 3  # one ESP call per chunk
    sizes = sorted(len(m.to) for m in mail.outbox)
    assert sizes == [1, 3, 3]
    first = mail.outbox[0]
    assert first.subject == "News for {{name}}"
    assert "{{name_html}}" in first.alternatives[0][0]
    assert set(first.merge_data) == set(first.to)
    values = first.merge_data[first.to[0]]
    assert values["name"].startswith("Member ")
    assert values["unsubscribe_url"].startswith("http://testserver/mail/unsubscribe/")
    assert 'href="http://testserver/news/"' in first.alternatives[0][0]
    # every recipient has its own log row and status
    rows = sending.recipients_of(mailing)
    assert rows.count() == 7
    assert set(rows.values_list("status", flat=True)) == {Status.SENT}
    assert results.summary(mailing).percent == 100


def test_each_member_of_a_batch_gets_their_own_one_click_unsubscribe(
    client, settings, members, held, django_capture_on_commit_callbacks
):
    """Issue 21: Gmail and Yahoo want RFC 8058 one-click unsubscribe in every bulk
    message, so a batch carries each member's own headers (anymail's merge_headers)."""
    connectors(settings, BATCH_SIZE=3)
    send_now(draft(), django_capture_on_commit_callbacks)
    worker.process_outbox(time_budget=10)
    batches = [m for m in mail.outbox if len(m.to) == 3]
    assert len(batches) == 2
    for sent in batches:
        assert set(sent.merge_headers) == set(sent.to)
        for address, headers in sent.merge_headers.items():
            assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
            one_click = headers["List-Unsubscribe"].strip("<>")
            assert one_click.startswith("http://testserver/mail/unsubscribe/")
            token = one_click.rstrip("/").removesuffix("/one-click").rsplit("/", 1)[-1]
            assert unsubscribe.check(token).address.address == address
    # One of them works, for that member only.
    first = batches[0]
    path = first.merge_headers[first.to[0]]["List-Unsubscribe"].strip("<>")
    path = path.removeprefix("http://testserver")
    assert client.post(path, {"List-Unsubscribe": "One-Click"}).status_code == 200
    statuses = dict(Address.objects.filter(address__in=first.to).values_list("address", "status"))
    assert statuses[first.to[0]] == AddressStatus.UNSUBSCRIBED
    assert [statuses[a] for a in first.to[1:]] == [AddressStatus.CONFIRMED] * 2


@pytest.mark.parametrize(
    ("backend", "mailing", "batched"),
    [
        ("anymail.backends.mailgun.EmailBackend", {}, True),
        ("anymail.backends.mandrill.EmailBackend", {}, False),  # no per-recipient headers
        ("anymail.backends.mandrill.EmailBackend", {"MERGE_HEADERS": True}, True),
        ("anymail.backends.mailgun.EmailBackend", {"MERGE_HEADERS": False}, False),
        ("anymail.backends.postmark.EmailBackend", {}, False),  # no merge fields in a body
        ("tests.esp.ScriptedBackend", {"MERGE_FIELD": "{{{{{}}}}}"}, True),  # a subclass
    ],
)
def test_a_batch_only_where_each_member_keeps_their_unsubscribe_headers(
    settings, backend, mailing, batched
):
    from wagtail_maillog.mailings.batching import plan_for

    settings.WAGTAIL_MAILLOG = {"CONNECTORS": {"c": {"BACKEND": backend, "MAILING": mailing}}}
    assert plan_for("c").batched is batched


def test_names_are_escaped_in_html_but_not_in_text(settings, django_capture_on_commit_callbacks):
    connectors(settings)
    member = Member.objects.create(name="<b>Bo & Co</b>", email="bo@example.com")
    set_status([(member.email, AddressStatus.CONFIRMED, "test")])
    send_now(draft(), django_capture_on_commit_callbacks)
    worker.process_outbox(time_budget=10)
    (sent,) = mail.outbox
    values = sent.merge_data["bo@example.com"]
    assert values["name"] == "<b>Bo & Co</b>"
    assert values["name_html"] == "&lt;b&gt;Bo &amp; Co&lt;/b&gt;"


def test_without_batch_support_one_rendered_message_per_recipient(
    settings, members, held, django_capture_on_commit_callbacks
):
    connectors(settings, backend="django.core.mail.backends.locmem.EmailBackend")
    mailing = send_now(draft(), django_capture_on_commit_callbacks)
    assert OutboxItem.objects.count() == 7
    worker.process_outbox(time_budget=10)
    assert len(mail.outbox) == 7
    by_address = {m.to[0]: m for m in mail.outbox}
    message = by_address["m3@example.com"]
    assert message.subject == "News for Member 3"
    assert "Hello Member 3," in message.body
    assert "/mail/unsubscribe/" in message.body
    assert message.extra_headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert set(sending.recipients_of(mailing).values_list("status", flat=True)) == {Status.SENT}


def test_sandbox_mailing_reaches_final_statuses(settings, django_capture_on_commit_callbacks):
    connectors(settings, backend="wagtail_maillog.sandbox.SandboxBackend", BATCH_SIZE=2)
    for name in ["ok1", "ok2", "ok3"]:
        Member.objects.create(name=name, email=f"{name}@example.com")
    Member.objects.create(name="Bouncy", email="x@bounce.example")
    set_status(
        [(a, AddressStatus.CONFIRMED, "t") for a in Member.objects.values_list("email", flat=True)]
    )
    mailing = send_now(draft(), django_capture_on_commit_callbacks)
    worker.process_outbox(time_budget=10)
    summary = results.summary(mailing)
    assert summary.total == 4
    assert summary.percent == 100
    assert summary.counts.get(Status.BOUNCED) == 1
    assert (
        sum(summary.counts.get(s, 0) for s in (Status.DELIVERED, Status.OPENED, Status.CLICKED))
        == 3
    )
    assert summary.problems == 1
    assert [r.address for r in results.problem_recipients(mailing)] == ["x@bounce.example"]
    # the bounce made the address a problem: the next mailing leaves it out
    second = send_now(draft(subject="Second"), django_capture_on_commit_callbacks)
    assert second.queued_count == 3
    assert second.skipped == {AddressStatus.BOUNCED: 1}


def _unsubscribe_url(settings, django_capture_on_commit_callbacks, address: str) -> str:
    connectors(settings)
    send_now(draft(), django_capture_on_commit_callbacks)
    worker.process_outbox(time_budget=10)
    for message in mail.outbox:
        if address in message.merge_data:
            return message.merge_data[address]["unsubscribe_url"]
    raise AssertionError(f"{address} was not mailed")


def test_unsubscribe_link_asks_then_unsubscribes_once(
    client, settings, members, django_capture_on_commit_callbacks
):
    url = _unsubscribe_url(settings, django_capture_on_commit_callbacks, "m2@example.com")
    path = url.removeprefix("http://testserver")
    # no address in the link (the signature is random text: "m2" may be in it by chance)
    assert "m2@example.com" not in path and "m2%40example.com" not in path
    token = path.rstrip("/").rsplit("/", 1)[1]
    data = signing.TimestampSigner(salt=unsubscribe.SALT).unsign_object(token)
    assert set(data) == {"a", "m"} and all(isinstance(v, int) for v in data.values())

    page = client.get(path)
    assert page.status_code == 200
    assert "m•••@example.com" in page.content.decode()
    assert Address.objects.get(address="m2@example.com").status == AddressStatus.CONFIRMED

    done = client.post(path)
    assert done.status_code == 200
    address = Address.objects.get(address="m2@example.com")
    assert address.status == AddressStatus.UNSUBSCRIBED
    assert "News for {{ name }}" in address.changes.last().cause

    again = client.post(path)
    assert again.status_code == 200
    assert address.changes.filter(new=AddressStatus.UNSUBSCRIBED).count() == 1
    # the next mailing leaves the address out
    second = send_now(draft(subject="Next"), django_capture_on_commit_callbacks)
    assert second.skipped[AddressStatus.UNSUBSCRIBED] == 1


def test_unsubscribe_form_needs_csrf_but_one_click_does_not(
    settings, members, django_capture_on_commit_callbacks
):
    from django.test import Client

    url = _unsubscribe_url(settings, django_capture_on_commit_callbacks, "m4@example.com")
    path = url.removeprefix("http://testserver")
    strict = Client(enforce_csrf_checks=True)
    assert strict.post(path).status_code == 403
    assert Address.objects.get(address="m4@example.com").status == AddressStatus.CONFIRMED

    assert strict.post(path + "one-click/", {}).status_code == 400
    response = strict.post(path + "one-click/", {"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200
    assert Address.objects.get(address="m4@example.com").status == AddressStatus.UNSUBSCRIBED


def test_tampered_and_expired_links_do_nothing(
    client, settings, members, django_capture_on_commit_callbacks
):
    url = _unsubscribe_url(settings, django_capture_on_commit_callbacks, "m1@example.com")
    path = url.removeprefix("http://testserver")
    token = path.rstrip("/").rsplit("/", 1)[-1]
    forged = path.replace(token, token[:-3] + ("aaa" if not token.endswith("aaa") else "bbb"))
    assert client.post(forged).status_code == 404
    assert client.get("/mail/unsubscribe/preview/").status_code == 404
    settings.WAGTAIL_MAILLOG = {**settings.WAGTAIL_MAILLOG, "UNSUBSCRIBE_MAX_AGE_DAYS": -1}
    assert client.post(path).status_code == 410
    assert Address.objects.get(address="m1@example.com").status == AddressStatus.CONFIRMED


def test_tokens_are_signed_as_djangos_own_signer_signs(settings):
    from django.core import signing

    from wagtail_maillog import tokens

    for key in ("first-secret-key", "ключ-второй"):
        settings.SECRET_KEY = key
        ours = tokens._signer("maillog.test", key)
        for value in ("a", "eyJhIjo3fQ:1tQx", "ü" * 300):
            django = signing.TimestampSigner(salt="maillog.test", algorithm="sha256")
            assert ours.signature(value) == django.signature(value)
        token = tokens.make({"a": 7, "m": 3}, "maillog.test")
        assert tokens.read(token, "maillog.test", 1) == {"a": 7, "m": 3}
        assert tokens.read(token, "another.salt", 1) == tokens.INVALID
    settings.SECRET_KEY = "first-secret-key"
    assert tokens.read(token, "maillog.test", 1) == tokens.INVALID  # made with the other key


def test_public_pages_are_rate_limited(client, settings):
    settings.WAGTAIL_MAILLOG = {"PUBLIC_RATE_LIMIT": 5}
    codes = [client.get("/mail/unsubscribe/nonsense/").status_code for _ in range(7)]
    assert codes[:5] == [404] * 5
    assert codes[5:] == [429, 429]
    assert client.get("/mail/confirm/nonsense/").status_code == 429
    assert int(client.get("/mail/confirm/nonsense/")["Retry-After"]) <= 60


def test_cancel_before_start_sends_nothing(settings, members, django_capture_on_commit_callbacks):
    connectors(settings)
    mailing = draft()
    with django_capture_on_commit_callbacks(execute=True):
        sending.send(mailing, send_at=timezone.now() + timedelta(hours=1))
    mailing.refresh_from_db()
    assert mailing.state == MailingState.SCHEDULED
    sending.cancel(mailing)
    mailing.refresh_from_db()
    assert mailing.state == MailingState.CANCELLED
    Mailing.objects.filter(pk=mailing.pk).update(send_at=timezone.now() - timedelta(minutes=1))
    assert sending.start_due() == 0
    assert sending.queue_mailing(mailing.pk).endswith("nothing to do")
    worker.process_outbox(time_budget=5)
    assert not sending.recipients_of(mailing).exists()
    assert mail.outbox == []


def test_scheduled_mailing_starts_when_due(settings, members, django_capture_on_commit_callbacks):
    connectors(settings)
    mailing = draft()
    with django_capture_on_commit_callbacks(execute=True):
        sending.send(mailing, send_at=timezone.now() + timedelta(minutes=5))
    assert sending.start_due() == 0
    Mailing.objects.filter(pk=mailing.pk).update(send_at=timezone.now() - timedelta(seconds=1))
    assert sending.start_due() == 1
    mailing.refresh_from_db()
    # queued in the outbox; "sent" already if the (synchronous) worker it woke sent them
    assert mailing.state in (MailingState.QUEUED, MailingState.SENT)
    assert mailing.queued_count == 7


def test_a_scheduled_mailing_whose_sender_left_the_list_is_not_sent(
    settings, members, django_capture_on_commit_callbacks
):
    connectors(settings)
    settings.WAGTAIL_MAILLOG["MAILING_FROM_ADDRESSES"] = ["Club <club@example.com>"]
    mailing = draft(from_email="Club <club@example.com>")
    with django_capture_on_commit_callbacks(execute=True):
        sending.send(mailing, send_at=timezone.now() + timedelta(minutes=5))
    settings.WAGTAIL_MAILLOG["MAILING_FROM_ADDRESSES"] = []  # the site withdrew it
    Mailing.objects.filter(pk=mailing.pk).update(send_at=timezone.now() - timedelta(seconds=1))
    with pytest.raises(content.Refused):  # sync mode: the task's failure reaches the caller
        sending.start_due()
    mailing.refresh_from_db()
    assert mailing.state == MailingState.FAILED and "club@example.com" in mailing.error
    assert OutboxItem.objects.count() == 0 and not mail.outbox


def test_a_members_name_cannot_break_the_subject_line(
    settings, held, django_capture_on_commit_callbacks
):
    connectors(settings, backend="django.core.mail.backends.locmem.EmailBackend")
    member = Member.objects.create(name="Eve\r\nBcc: all@example.com", email="eve@example.com")
    set_status([(member.email, AddressStatus.CONFIRMED, "test")])
    send_now(draft(), django_capture_on_commit_callbacks)
    worker.process_outbox(time_budget=10)
    (sent,) = mail.outbox
    assert sent.subject == "News for Eve  Bcc: all@example.com" and sent.bcc == []


def test_cancel_while_queued_takes_the_rest_out_of_the_outbox(
    settings, members, held, django_capture_on_commit_callbacks
):
    connectors(settings, BATCH_SIZE=2)
    mailing = send_now(draft(), django_capture_on_commit_callbacks)
    assert OutboxItem.objects.count() == 4
    taken_out = sending.cancel(mailing)
    assert taken_out == 4
    worker.process_outbox(time_budget=5)
    assert mail.outbox == []
    assert set(sending.recipients_of(mailing).values_list("status", flat=True)) == {
        Status.CANCELLED
    }


def test_queuing_twice_queues_nobody_twice(
    settings, members, held, django_capture_on_commit_callbacks, monkeypatch
):
    """A task that runs again (a crash, a retry by django-q2) skips who is queued already."""
    connectors(settings, BATCH_SIZE=3)
    mailing = send_now(draft(), django_capture_on_commit_callbacks)
    Mailing.objects.filter(pk=mailing.pk).update(state=MailingState.QUEUING)
    # Hours later (the every-minute schedule restarts a lost task): the first run's
    # start is kept, and its rows are found.
    later = timezone.now() + timedelta(hours=5)
    monkeypatch.setattr(timezone, "now", lambda: later)
    sending.queue_mailing(mailing.pk)
    assert sending.recipients_of(mailing).count() == 7
    assert OutboxItem.objects.count() == 3
    again = Mailing.objects.get(pk=mailing.pk)
    assert again.started_at == mailing.started_at
    # The counts are the audience's, once: not 22 members, not 7 "shared addresses".
    assert (again.member_count, again.queued_count) == (11, 7)
    assert again.skipped == mailing.skipped
    assert audiences.DUPLICATE not in again.skipped


def test_an_older_run_stops_when_a_later_one_took_over(
    settings, members, held, django_capture_on_commit_callbacks, monkeypatch
):
    """Two runs at once (the schedule restarted a task it thought lost): only the
    latest writes, and together they queue everybody once."""
    connectors(settings, BATCH_SIZE=3)
    real, results = sending._queue_chunk, []

    def then_another_run_claims(run, *args):
        results.append(real(run, *args))
        if len(results) == 1:
            Mailing.objects.filter(pk=run.mailing.pk).update(queue_runs=F("queue_runs") + 1)
        return results[-1]

    monkeypatch.setattr(sending, "_queue_chunk", then_another_run_claims)
    mailing = send_now(draft(), django_capture_on_commit_callbacks)
    assert results == [True, False]
    assert mailing.state == MailingState.QUEUING
    first = sending.recipients_of(mailing).count()
    assert 0 < first < 7

    monkeypatch.setattr(sending, "_queue_chunk", real)
    assert sending.queue_mailing(mailing.pk).endswith("queued")
    mailing.refresh_from_db()
    assert mailing.queue_runs == 3
    addresses = list(sending.recipients_of(mailing).values_list("address", flat=True))
    assert len(addresses) == len(set(addresses)) == 7
    assert (mailing.member_count, mailing.queued_count) == (11, 7)
    assert mailing.skipped == {
        audiences.NO_ADDRESS: 1,
        audiences.NOT_KNOWN: 1,
        AddressStatus.BOUNCED: 1,
        AddressStatus.REQUESTED: 1,
    }


def test_only_a_draft_can_be_sent(settings, members, django_capture_on_commit_callbacks):
    connectors(settings)
    mailing = send_now(draft(), django_capture_on_commit_callbacks)
    with pytest.raises(sending.MailingError):
        sending.send(mailing)


def test_list_audience(settings, django_capture_on_commit_callbacks):
    connectors(settings)
    board = MailingList.objects.create(name="Board")
    for address in ["a@example.com", "b@example.com"]:
        MailingListMember.objects.create(mailing_list=board, address=address, name=address[0])
    set_status([("a@example.com", AddressStatus.CONFIRMED, "t")])
    assert f"list:{board.pk}" in dict(audiences.choices())
    mailing = send_now(draft(audience=f"list:{board.pk}"), django_capture_on_commit_callbacks)
    assert list(sending.recipients_of(mailing).values_list("address", flat=True)) == [
        "a@example.com"
    ]
    assert mailing.skipped == {audiences.NOT_KNOWN: 1}


def test_confirmed_addresses_audience(settings, members, django_capture_on_commit_callbacks):
    connectors(settings)
    mailing = send_now(draft(audience="confirmed"), django_capture_on_commit_callbacks)
    assert mailing.queued_count == 7
    assert mailing.skipped == {}


def test_send_test_goes_to_the_user_only_and_is_not_a_recipient(settings, members):
    from django.contrib.auth.models import User

    connectors(settings)
    user = User.objects.create_user("ed", "ed@example.com", "pw", first_name="Ed")
    mailing = draft()
    assert sending.send_test(mailing, user) == "ed@example.com"
    (sent,) = mail.outbox
    assert sent.to == ["ed@example.com"]
    assert sent.subject == "[TEST] News for Ed"
    assert not sending.recipients_of(mailing).exists()
    mailing.refresh_from_db()
    assert mailing.state == MailingState.DRAFT


def test_refresh_without_fetcher_still_finishes(
    settings, members, django_capture_on_commit_callbacks
):
    connectors(settings)
    mailing = send_now(draft(), django_capture_on_commit_callbacks)
    worker.process_outbox(time_budget=5)
    assert results.request_refresh(mailing)
    mailing.refresh_from_db()
    assert not mailing.refresh_running
    assert mailing.refreshed_at is not None
    assert mailing.refresh_total == 7  # "sent", not final yet


def test_content_text_part_keeps_links_readable():
    from wagtail_maillog.mailings.content import html_to_text

    text = html_to_text(
        '<p>Hi <b>there</b></p><p>Read <a href="https://x.example/a?b=1&amp;c=2">this</a></p>'
    )
    assert text == "Hi there\n\nRead this (https://x.example/a?b=1&c=2)\n"
    assert re.search(r"<", text) is None


def test_site_relative_links_are_made_absolute_the_site_root_too(settings):
    """``/`` and ``/path`` get the site's address; ``//host`` and full URLs are kept."""
    settings.WAGTAIL_MAILLOG = {"PUBLIC_BASE_URL": "https://club.example/"}
    html = (
        '<a href="/">Home</a> <a href="/events/?y=1">Events</a> <img src="/media/a.png">'
        ' <a href="//cdn.example/x">CDN</a> <a href="https://other.example/">Other</a>'
    )
    assert content.absolute_urls(html) == (
        '<a href="https://club.example/">Home</a>'
        ' <a href="https://club.example/events/?y=1">Events</a>'
        ' <img src="https://club.example/media/a.png">'
        ' <a href="//cdn.example/x">CDN</a> <a href="https://other.example/">Other</a>'
    )


def test_a_page_as_the_body(settings, members, held, django_capture_on_commit_callbacks):
    """The chosen page, rendered with its own template; its links made absolute."""
    from wagtail.models import Page

    from tests.browser_helpers import ensure_wagtail_root
    from tests.testapp.models import NewsPage

    connectors(settings)
    ensure_wagtail_root()
    root = Page.objects.get(depth=1)
    page = root.add_child(
        instance=NewsPage(title="Autumn news", slug="autumn", body="<p>Dear {{ name }}, hi.</p>")
    )
    mailing = send_now(draft(page=page, body=""), django_capture_on_commit_callbacks)
    assert mailing.queued_count == 7
    worker.process_outbox(time_budget=10)
    html = mail.outbox[0].alternatives[0][0]
    assert "<h1>Autumn news</h1>" in html
    assert "Dear {{name_html}}, hi." in html
    assert 'href="http://testserver/about/"' in html
    assert 'src="http://testserver/media/logo.png"' in html
    assert "{{unsubscribe_url_html}}" in html  # no footer in the page: the link is added
    assert "About the club (http://testserver/about/)" in mail.outbox[0].body


def test_one_click_unsubscribes_from_one_provider_server_are_never_refused(settings):
    """RFC 8058: Gmail posts its users' one-click unsubscribes from a few servers. Valid
    tokens are not limited (nor counted); made-up ones still are."""
    settings.WAGTAIL_MAILLOG = {"PUBLIC_RATE_LIMIT": 5}
    mailing = Mailing.objects.create(subject="News", body="<p>x</p>", audience="members")
    addresses = [f"m{i}@gmail.example" for i in range(8)]
    set_status([(a, AddressStatus.CONFIRMED, "test") for a in addresses])
    google = Client(REMOTE_ADDR="209.85.220.41")
    codes = [
        google.post(
            f"/mail/unsubscribe/{unsubscribe.make_token(pk, mailing.pk)}/one-click/",
            {"List-Unsubscribe": "One-Click"},
        ).status_code
        for pk in Address.objects.filter(address__in=addresses).values_list("pk", flat=True)
    ]
    assert codes == [200] * 8
    assert not Address.objects.filter(status=AddressStatus.CONFIRMED).exists()
    forged = [
        google.post("/mail/unsubscribe/nonsense/one-click/", {"List-Unsubscribe": "One-Click"})
        for _ in range(6)
    ]
    assert [r.status_code for r in forged] == [404] * 5 + [429]
