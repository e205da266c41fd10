"""The set-based paths cost the same number of statements for 10 rows as for
hundreds, on every database: queuing a mailing, purging old mail, claiming
outbox mail, storing a webhook batch (tests/test_webhooks.py). The paths of one
row cost at most three: a webhook request of one event, queueing one mail.

Statements are counted by the server on MariaDB (``tests.utils.Statements``):
Django counts an ``executemany`` as one query while mysqlclient may send one
statement per row, so only the server's count can tell.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.core.mail import EmailMessage, send_mail
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tests.test_webhooks import postmark
from tests.testapp.models import Member
from tests.utils import Statements, post_json, send_with_ids, tracking_event
from wagtail_maillog import events, label
from wagtail_maillog.addresses.health import set_status
from wagtail_maillog.models import (
    Address,
    AddressStatus,
    ConnectorState,
    Event,
    Mailing,
    Message,
    OutboxItem,
    Recipient,
    SendAttempt,
)
from wagtail_maillog.models import SendState as S
from wagtail_maillog.outbox import worker
from wagtail_maillog.purge import purge

pytestmark = pytest.mark.django_db

SMALL, LARGE = 10, 400


# ---- the mailing queue -------------------------------------------------------------------------


def _members(start: int, count: int) -> None:
    """``count`` more confirmed members (bulk: no per-row signal)."""
    made = Member.objects.bulk_create(
        Member(name=f"Member {i}", email=f"m{i}@example.com") for i in range(start, start + count)
    )
    set_status([(m.email, AddressStatus.CONFIRMED, "test") for m in made])


def _queue_statements(settings, capture, **plan: object) -> int:
    """Statements of one queuing task run, for every member there is now."""
    from django.core.cache import cache

    from wagtail_maillog.mailings import sending

    settings.WAGTAIL_MAILLOG = {
        "CONNECTORS": {
            "news": {
                "BACKEND": "anymail.backends.test.EmailBackend",
                **({"MAILING": plan} if plan else {}),
            }
        },
        "DEFAULT_CONNECTOR": "news",
    }
    cache.set(worker.WAKE_KEY, 1, timeout=300)  # no worker takes the mail meanwhile
    mailing = Mailing.objects.create(
        subject="News for {{ name }}", body="<p>Hi {{ name }}</p>", audience="members"
    )
    with capture(execute=False):
        sending.send(mailing)
    with Statements() as sent:
        assert sending.queue_mailing(mailing.pk).endswith("queued")
    return sent.count


@pytest.mark.parametrize(
    "plan",
    [pytest.param({}, id="one message per member"), pytest.param({"BATCH_SIZE": 500}, id="batch")],
)
def test_queuing_a_mailing_costs_the_same_statements_for_more_members(
    settings, django_capture_on_commit_callbacks, plan
):
    _members(0, SMALL)
    _queue_statements(settings, django_capture_on_commit_callbacks, **plan)  # caches warm
    small = _queue_statements(settings, django_capture_on_commit_callbacks, **plan)
    _members(SMALL, LARGE - SMALL)
    large = _queue_statements(settings, django_capture_on_commit_callbacks, **plan)
    mailings = Mailing.objects.order_by("pk")
    assert [m.queued_count for m in mailings] == [SMALL, SMALL, LARGE]
    assert large == small, (small, large)


# ---- purge ---------------------------------------------------------------------------------


def _old_mail(count: int, days: int) -> None:
    """``count`` delivered messages with an event each, ``days`` old."""
    at = timezone.now() - timedelta(days=days)
    messages = Message.objects.bulk_create(
        Message(subject=f"Old {i}", created_at=at, body_stored=True) for i in range(count)
    )
    recipients = Recipient.objects.bulk_create(
        Recipient(message=m, address=f"r{m.pk}@example.com", created_at=at) for m in messages
    )
    Event.objects.bulk_create(
        Event(
            recipient=r,
            event_type="delivered",
            esp_name="Test",
            dedupe_key=f"k{r.pk}",
            timestamp=at,
            received_at=at,
            raw={},
        )
        for r in recipients
    )
    SendAttempt.objects.bulk_create(
        SendAttempt(message=m, outcome=SendAttempt.Outcome.SENT) for m in messages
    )


@pytest.mark.parametrize("mode", ["messages", "events"])
def test_purging_costs_the_same_statements_for_more_messages(mode):
    counts = {}
    for count, days in ((SMALL, 40), (LARGE, 50)):
        _old_mail(count, days)
        with Statements() as sent:
            result = purge(before=timezone.now() - timedelta(days=days - 1), mode=mode)
        assert (result.messages, result.events, result.batches) == (count, count, 1)
        counts[count] = sent.count
    assert counts[LARGE] == counts[SMALL], counts
    if mode == "messages":
        assert not Message.objects.exists() and not SendAttempt.objects.exists()
    else:
        assert Message.objects.count() == SMALL + LARGE and not Event.objects.exists()


# ---- outbox claims -----------------------------------------------------------------------------


def _waiting(count: int) -> None:
    messages = Message.objects.bulk_create(Message(subject=f"Wait {i}") for i in range(count))
    due = timezone.now() - timedelta(seconds=1)
    OutboxItem.objects.bulk_create(
        OutboxItem(message=m, connector="default", state=S.QUEUED, next_attempt_at=due)
        for m in messages
    )


def test_claiming_costs_the_same_statements_for_more_mail(settings):
    settings.WAGTAIL_MAILLOG = {"CONNECTORS": {"default": {"BACKEND": "tests.esp.ScriptedBackend"}}}
    counts = {}
    for count, owner in ((SMALL, "small"), (LARGE, "large")):
        _waiting(count)
        with Statements() as sent:
            claimed = worker.claim(LARGE, owner)
        assert len(claimed) == count
        assert all(item.state == S.SENDING and item.lease_owner == owner for item in claimed)
        counts[count] = sent.count
    assert counts[LARGE] == counts[SMALL], counts


def test_claims_skip_locked_rows_where_the_database_can(settings):
    """PostgreSQL and MariaDB >= 10.6: a worker passes over rows another one holds."""
    settings.WAGTAIL_MAILLOG = {"CONNECTORS": {"default": {"BACKEND": "tests.esp.ScriptedBackend"}}}
    _waiting(2)
    with CaptureQueriesContext(connection) as queries:
        assert len(worker.claim(1, "one")) == 1
    sql = " ".join(q["sql"] for q in queries).upper()
    if connection.vendor == "sqlite":  # one writer at a time: nothing to skip
        assert "SKIP LOCKED" not in sql
    else:
        assert connection.features.has_select_for_update_skip_locked
        assert "FOR UPDATE SKIP LOCKED" in sql


def test_a_claim_whose_candidates_another_worker_took_first_takes_the_next_ones(
    settings, monkeypatch
):
    """Workers a and b read the same candidates; a claims first. b takes the next due
    rows of those it read. Where SKIP LOCKED is missing (SQLite), b took nothing and
    ended its run: a second worker process sent next to nothing."""
    settings.WAGTAIL_MAILLOG = {"CONNECTORS": {"default": {"BACKEND": "tests.esp.ScriptedBackend"}}}
    _waiting(LARGE)
    now = timezone.now()
    read = worker._candidates(50 * worker.CANDIDATES, now, {"default"})
    a = [item.pk for item in worker.claim(50, "a", now=now)]
    monkeypatch.setattr(worker, "_candidates", lambda limit, now, enabled: list(read))
    b = [item.pk for item in worker.claim(50, "b", now=now)]
    assert a == read[:50]
    assert b == read[50:100]
    assert OutboxItem.objects.filter(lease_owner="b", state=S.SENDING).count() == 50


@pytest.mark.skipif(connection.vendor == "sqlite", reason="row locks: PostgreSQL and MariaDB")
@pytest.mark.django_db(transaction=True)
def test_a_claim_locks_only_its_batch_so_another_worker_claims_at_the_same_time(settings):
    """Worker a holds its claim's locks while worker b claims: b gets a batch of its
    own. On MariaDB the claim used to sort every due row and lock each one it read, so
    b found all 400 locked and ended its run with nothing (or deadlocked)."""
    import threading

    from django.db import connections

    settings.WAGTAIL_MAILLOG = {"CONNECTORS": {"default": {"BACKEND": "tests.esp.ScriptedBackend"}}}
    _waiting(LARGE)
    holding, release, claimed = threading.Event(), threading.Event(), {}

    def hold_after_the_lock(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if "SKIP LOCKED" in sql.upper() and not holding.is_set():
            holding.set()
            release.wait(30)
        return result

    def first_worker() -> None:
        try:
            with connection.execute_wrapper(hold_after_the_lock):
                claimed["a"] = worker.claim(50, "a")
        finally:
            connections.close_all()

    thread = threading.Thread(target=first_worker)
    thread.start()
    try:
        assert holding.wait(30)
        claimed["b"] = worker.claim(50, "b")  # while a holds its locks
    finally:
        release.set()
        thread.join()
    a, b = {i.pk for i in claimed["a"]}, {i.pk for i in claimed["b"]}
    assert len(a) == len(b) == 50 and not a & b


def test_purge_handles_every_foreign_key_to_what_it_deletes():
    """Purge deletes with one statement per table, without Django's collector: a new
    foreign key to a message, recipient or event must be handled there too."""
    from django.apps import apps

    from wagtail_maillog import purge as purging

    pointing = {
        (model, field.name)
        for model in apps.get_models(include_auto_created=True)
        for field in model._meta.get_fields(include_hidden=True)
        if field.many_to_one or field.one_to_one
        if field.concrete and field.related_model in (Message, Recipient, Event)
    }
    assert pointing == purging.POINTING_AT_MESSAGES


# ---- one event per request, and queueing one mail ---------------------------------------------
#
# ESPs that post one event per request (Postmark, Mailgun, SES, Brevo, Resend) make the
# statements of a request, not its rows, what a webhook costs; the same for a mail queued
# through the outbox (issue 20). Counted without the transaction's own BEGIN, COMMIT and
# savepoints: in a test the request's transaction is a savepoint, in production a
# BEGIN/COMMIT pair, the same for every path.

ONE_EVENT_LIMIT = 3
#: Queueing one mail: the message, its recipients and the outbox row; on PostgreSQL
#: one statement (data-modifying CTEs, bulk.insert_linked).
QUEUE_LIMIT = {"postgresql": 1}.get(connection.vendor, 3)
POSTMARK_URL = "/anymail/postmark/tracking/"


class DataStatements:
    """The statements this connection sent to the server, less transaction control.

    SQLite and PostgreSQL: Django's log of the connection, less BEGIN, COMMIT,
    ROLLBACK and savepoints. MariaDB/MySQL: the server's count (``Questions``, see
    :class:`tests.utils.Statements`) less its own counts of those (``Com_*``).
    """

    CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE SAVEPOINT")
    MYSQL_CONTROL = (
        "Com_begin",
        "Com_commit",
        "Com_rollback",
        "Com_savepoint",
        "Com_release_savepoint",
        "Com_rollback_to_savepoint",
    )

    def __init__(self) -> None:
        self.inner = Statements()
        self.sql: list[str] = []

    def _mysql_control(self) -> int:
        with connection.cursor() as cursor:
            names = ", ".join(f"'{name}'" for name in self.MYSQL_CONTROL)
            cursor.execute(f"SHOW SESSION STATUS WHERE Variable_name IN ({names})")
            return sum(int(value) for _name, value in cursor.fetchall())

    def __enter__(self) -> DataStatements:
        if connection.vendor == "mysql":
            self.control = self._mysql_control()
        self.inner.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.inner.__exit__(*exc)
        if connection.vendor == "mysql":
            self.count = self.inner.count - (self._mysql_control() - self.control)
            return
        self.sql = [
            q["sql"] for q in self.inner.captured if not q["sql"].upper().startswith(self.CONTROL)
        ]
        self.count = len(self.sql)


def _post(client, auth, payload) -> int:
    """Statements of one webhook request carrying ``payload``."""
    with DataStatements() as sent:
        assert post_json(client, POSTMARK_URL, payload, auth).status_code == 200
    return sent.count


@pytest.fixture(
    params=["statement", "function"] if connection.vendor == "postgresql" else ["statement"]
)
def write_path(request, monkeypatch) -> str:
    """PostgreSQL's one-event write: the statement (a new connection for each request,
    Django's default ``CONN_MAX_AGE = 0``) or migration 0016's function (a connection
    that lives on). One run elsewhere."""
    max_age = 60 if request.param == "function" else 0
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", max_age)
    return request.param


@pytest.fixture
def two_sent(db):
    """ann's message (she has an address row) and bob's (he has none), both queued at the ESP."""
    send_with_ids(["ann@example.com"], "pm-1")
    send_with_ids(["bob@example.com"], "pm-2")
    Address.objects.create(address="ann@example.com")


def _one_event_requests(client, auth) -> dict[str, int]:
    """Statements of each request of a sequence of one-event requests (see ``two_sent``),
    after checking that they stored what the batch path stores."""
    late = {"DeliveredAt": "2026-11-05T16:00:00Z"}
    counts = {
        "delivered": _post(client, auth, postmark("Delivery", "pm-1", "ann@example.com")),
        "opened": _post(client, auth, postmark("Open", "pm-1", "ann@example.com")),
        "late delivered": _post(
            client, auth, postmark("Delivery", "pm-1", "ann@example.com", **late)
        ),
        "replayed": _post(client, auth, postmark("Open", "pm-1", "ann@example.com")),
        "unknown message": _post(client, auth, postmark("Delivery", "pm-x", "zed@example.com")),
        "no address row": _post(client, auth, postmark("Delivery", "pm-2", "bob@example.com")),
    }
    ann = Recipient.objects.get(address="ann@example.com")
    assert ann.status == "opened" and ann.events.count() == 3
    assert ann.opened_at is not None and ann.status_at == ann.opened_at
    assert Recipient.objects.get(address="bob@example.com").status == "delivered"
    assert Event.objects.filter(recipient__isnull=True, esp_message_id="pm-x").count() == 1
    assert Address.objects.get(address="ann@example.com").last_event_at is not None
    assert not Address.objects.filter(address="bob@example.com").exists()
    return counts


@pytest.mark.usefixtures("write_path")
def test_one_event_requests_cost_at_most_three_statements(client, webhook_auth, two_sent):
    counts = _one_event_requests(client, webhook_auth)
    assert max(counts.values()) <= ONE_EVENT_LIMIT, counts
    assert counts["replayed"] == 1, counts
    if connection.vendor == "sqlite":
        # The INSERT says whether the address has a row: bob's has none, so no UPDATE
        # of addresses (PostgreSQL folds it into its one statement anyway).
        assert counts["no address row"] == 2, counts


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's compare-and-set path")
def test_postgresql_stores_one_event_in_two_statements_without_a_transaction(
    client, webhook_auth, two_sent, write_path
):
    """A read without a lock, then one statement (or the call of the function that
    holds it): no BEGIN and COMMIT of its own (in a test a transaction of its own shows
    as a savepoint)."""
    with DataStatements() as sent:
        assert (
            post_json(
                client, POSTMARK_URL, postmark("Delivery", "pm-1", "ann@example.com"), webhook_auth
            ).status_code
            == 200
        )
    assert sent.count == 2, sent.sql
    assert not any(q["sql"].upper().startswith("SAVEPOINT") for q in sent.inner.captured)
    assert "FOR NO KEY UPDATE" not in sent.sql[0]
    if write_path == "function":
        assert sent.sql[1].startswith(f"SELECT inserted, locked FROM {events.STORE_ONE_EVENT}(")
    else:
        assert sent.sql[1].startswith("WITH chk") and "FOR NO KEY UPDATE" in sent.sql[1]
    assert Recipient.objects.get(address="ann@example.com").status == "delivered"
    assert Address.objects.get(address="ann@example.com").last_event_at is not None


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's own path")
def test_sqlite_without_returning_stores_the_same(client, webhook_auth, two_sent, monkeypatch):
    """SQLite before 3.35 (no RETURNING) takes the path of the other databases."""
    monkeypatch.setattr(events, "_returns_from_insert", lambda: False)
    counts = _one_event_requests(client, webhook_auth)
    assert max(counts.values()) <= ONE_EVENT_LIMIT + 1, counts


@pytest.mark.usefixtures("write_path")
def test_a_bounce_adds_only_the_address_status_change(client, webhook_auth, two_sent):
    """A change that marks the address (a bounce, a complaint) also reads, updates and
    writes the history of the address: its ``last_event_at`` goes in that UPDATE."""
    count = _post(client, webhook_auth, postmark("Bounce", "pm-1", "ann@example.com"))
    assert count <= ONE_EVENT_LIMIT + 3, count
    address = Address.objects.get(address="ann@example.com")
    assert address.status == AddressStatus.BOUNCED and address.last_event_at is not None
    change = address.changes.get()
    assert change.recipient == Recipient.objects.get(address="ann@example.com")


def test_queueing_a_mail_costs_at_most_three_statements_one_on_postgresql(settings):
    settings.EMAIL_BACKEND = "wagtail_maillog.outbox.backend.OutboxBackend"
    settings.WAGTAIL_MAILLOG = {"CONNECTORS": {"default": {"BACKEND": "tests.esp.ScriptedBackend"}}}
    send_mail("Warm", "Body", "site@example.com", ["warm@example.com"])  # caches warm
    with DataStatements() as sent:
        send_mail("Hello", "Body", "site@example.com", ["ann@example.com"])
    assert sent.count <= QUEUE_LIMIT, sent.sql
    assert OutboxItem.objects.get(message__subject="Hello").state == S.QUEUED


# ---- what the folded statements still guarantee --------------------------------------------


def test_a_switch_in_the_admin_counts_for_the_next_mail_queued_in_any_process(settings):
    """The INSERT reads the switch: nothing cached, so a switch made by another process
    (its row written here without this process being told) counts at once."""
    settings.EMAIL_BACKEND = "wagtail_maillog.outbox.backend.OutboxBackend"
    settings.WAGTAIL_MAILLOG = {
        "CONNECTORS": {
            "default": {"BACKEND": "tests.esp.ScriptedBackend"},
            "off": {"BACKEND": "tests.esp.ScriptedBackend", "ENABLED": False},
        }
    }

    def queued(subject: str, connector: str = "default") -> str:
        message = EmailMessage(subject, "Body", "site@example.com", ["ann@example.com"])
        label(message, connector=connector)
        message.send()
        return OutboxItem.objects.get(message__subject=subject).state

    assert queued("Before") == S.QUEUED
    ConnectorState.objects.create(name="default", enabled=False)
    assert queued("Switched off") == S.CONNECTOR_DISABLED
    ConnectorState.objects.filter(name="default").update(enabled=True)
    assert queued("Switched on") == S.QUEUED
    assert queued("Off in settings", connector="off") == S.CONNECTOR_DISABLED
    send_mail("Plain", "Body", "site@example.com", ["bob@example.com"])
    assert OutboxItem.objects.get(message__subject="Plain").state == S.QUEUED


@pytest.mark.usefixtures("write_path")
def test_an_event_stored_meanwhile_changes_nothing_twice(monkeypatch):
    """A concurrent request may store the same event between the SELECT and the
    INSERT: the INSERT finds it, and nothing else of the request is written."""
    send_with_ids(["ann@example.com"], "esp-1")
    first = events.ingest([(tracking_event(), "Test")])
    assert (first.stored, first.duplicates, len(first.changes)) == (1, 0, 1)
    Recipient.objects.update(status="queued")  # so that a second move would show

    # The SELECT does not see the stored event (where there is one: not on SQLite).
    def unaware(row, lock=True):
        found = Recipient.objects.filter(esp_message_id=row.esp_message_id)
        return [
            events.RecipientState(*v) for v in found.values_list(*events.RecipientState.FIELDS)
        ], False

    monkeypatch.setattr(events, "_locked_recipients", unaware)
    again = events.ingest([(tracking_event(), "Test")])
    assert (again.stored, again.duplicates, again.changes) == (0, 1, [])
    assert Recipient.objects.get().status == "queued" and Event.objects.count() == 1


@pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="the only unlocked SELECT: SQLite has one writer, MariaDB's SELECT locks",
)
@pytest.mark.usefixtures("write_path")
def test_a_recipient_moved_after_the_select_gets_the_event_on_its_new_state(
    client, webhook_auth, two_sent
):
    """Another request moves the recipient between this request's SELECT and its write
    (here: an open at 16:40 lands first). The delivery of 16:33, decided on the state
    the SELECT read, would put the recipient back to "delivered"; it is applied to the
    new state instead, and the recipient stays "opened": the unlocked write finds the
    recipient changed, writes nothing, and the locked path stores the event."""
    opened = datetime(2026, 11, 5, 16, 40, tzinfo=UTC)
    moved: list[str] = []

    def move_after_the_select(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if (
            not moved
            and "esp_message_id" in sql
            and sql.lstrip().upper().startswith(("SELECT", "WITH LOCKED"))
        ):
            moved.append(sql)
            Recipient.objects.filter(address="ann@example.com").update(
                status="opened", status_at=opened, opened_at=opened
            )
        return result

    with connection.execute_wrapper(move_after_the_select), DataStatements() as sent:
        payload = postmark("Delivery", "pm-1", "ann@example.com")
        assert post_json(client, POSTMARK_URL, payload, webhook_auth).status_code == 200
    ann = Recipient.objects.get(address="ann@example.com")
    assert (ann.status, ann.status_at) == ("opened", opened)
    assert ann.events.get().event_type == "delivered"
    assert moved and any("FOR NO KEY UPDATE" in sql for sql in sent.sql[2:]), sent.sql


@pytest.mark.usefixtures("write_path")
@pytest.mark.parametrize("other_moved", [False, True])
def test_an_event_of_one_of_several_recipients_moves_only_its_own(
    client, webhook_auth, other_moved
):
    """The recipients of one message share its ESP id: an event of one of them moves
    only that one. The write compares every recipient the SELECT read: when another
    request moved another recipient of the message meanwhile, the unlocked write (on
    PostgreSQL) writes nothing and the locked path stores the event."""
    send_with_ids(["ann@example.com", "bob@example.com", "cid@example.com"], "pm-3")
    Address.objects.create(address="bob@example.com")
    before = dict(Recipient.objects.values_list("address", "status"))
    moved: list[str] = []

    def move_ann_after_the_select(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if other_moved and not moved and sql.lstrip().upper().startswith("SELECT R."):
            moved.append(sql)
            Recipient.objects.filter(address="ann@example.com").update(status="opened")
        return result

    payload = postmark("Delivery", "pm-3", "bob@example.com")
    with connection.execute_wrapper(move_ann_after_the_select), DataStatements() as sent:
        assert post_json(client, POSTMARK_URL, payload, webhook_auth).status_code == 200
    after = dict(Recipient.objects.values_list("address", "status"))
    expected = {**before, "bob@example.com": "delivered"}
    if moved:
        expected["ann@example.com"] = "opened"
    assert after == expected
    assert Event.objects.get().recipient.address == "bob@example.com"
    assert Address.objects.get().last_event_at is not None
    locked_path = any(sql.startswith("WITH locked AS") for sql in sent.sql)
    assert locked_path == (other_moved and connection.vendor == "postgresql"), sent.sql


@pytest.mark.usefixtures("write_path")
def test_an_event_moves_every_recipient_of_its_address(client, webhook_auth):
    """An address both in To and in Cc of one message is two recipients with the same
    ESP id: its event moves both, in one write (two rows of new values)."""
    send_with_ids(["ann@example.com"], "pm-4", cc=["ann@example.com"])
    payload = postmark("Delivery", "pm-4", "ann@example.com")
    assert post_json(client, POSTMARK_URL, payload, webhook_auth).status_code == 200
    moved = sorted(Recipient.objects.values_list("role", "status"))
    assert moved == [("cc", "delivered"), ("to", "delivered")]
    assert Event.objects.get().recipient == Recipient.objects.get(role="to")


@pytest.mark.parametrize(
    "to, expected", [(["ann@example.com"], "delivered"), (["a@example.com", "b@example.com"], None)]
)
def test_an_event_without_an_address_finds_the_only_recipient(to, expected):
    """As the batch path: an event that names no recipient belongs to the message's
    only recipient; with two, it is an orphan."""
    send_with_ids(to, "esp-1")
    result = events.ingest([(tracking_event(recipient=None), "Test")])
    event = Event.objects.get()
    assert result.orphans == (expected is None)
    if expected is None:
        assert event.recipient is None
        assert set(Recipient.objects.values_list("status", flat=True)) == {"queued"}
    else:
        assert event.recipient == Recipient.objects.get() and event.recipient.status == expected


@pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="PostgreSQL's advisory lock; MariaDB has none (docs/reliability.md), SQLite one writer",
)
def test_an_event_whose_mail_was_handed_over_after_the_select_finds_its_recipient(monkeypatch):
    """PostgreSQL: the SELECT found no recipient (the hand-over had not committed yet);
    the INSERT after the advisory lock finds it, and the status moves."""
    send_with_ids(["ann@example.com"], "esp-1")
    Address.objects.create(address="ann@example.com")
    monkeypatch.setattr(events, "_locked_recipients", lambda row, lock=True: ([], False))
    with DataStatements() as sent:
        result = events.ingest([(tracking_event(), "Test")])
    assert (result.stored, result.orphans) == (1, 0)
    ann = Recipient.objects.get()
    assert Event.objects.get().recipient == ann and ann.status == "delivered"
    assert Address.objects.get().last_event_at is not None
    assert any("pg_advisory_xact_lock" in sql for sql in sent.sql)


@pytest.mark.parametrize("failing", [1, 2, 3])
@pytest.mark.parametrize("kind", ["known recipient", "unknown message"])
@pytest.mark.usefixtures("write_path")
def test_a_failed_statement_of_one_event_stores_nothing_and_the_retry_stores_once(
    client, webhook_auth, two_sent, kind, failing
):
    """Whichever of its statements the database refuses, the request answers 503 with
    nothing of it stored (the address's ``last_event_at`` neither), and the ESP's
    retry stores the event once."""
    from django.db import OperationalError

    message_id, to = ("pm-1", "ann@example.com") if kind == "known recipient" else ("pm-x", "z@x")
    payload = postmark("Delivery", message_id, to)
    seen: list[str] = []

    def fail(execute, sql, params, many, context):
        if not sql.upper().startswith(DataStatements.CONTROL) and "SHOW SESSION" not in sql:
            seen.append(sql)
            if len(seen) == failing:
                raise OperationalError("database is locked")
        return execute(sql, params, many, context)

    def state():
        return (
            list(Event.objects.values_list("recipient_id", "event_type")),
            list(Recipient.objects.order_by("pk").values_list("status", "status_at")),
            list(Address.objects.values_list("address", "last_event_at")),
        )

    before = state()
    client.raise_request_exception = False
    with connection.execute_wrapper(fail):
        response = post_json(client, POSTMARK_URL, payload, webhook_auth)
    if len(seen) < failing:
        assert response.status_code == 200  # fewer statements than that: nothing failed
        return
    assert response.status_code == 503 and response["Retry-After"]
    assert state() == before
    for _ in range(2):
        assert post_json(client, POSTMARK_URL, payload, webhook_auth).status_code == 200
    assert Event.objects.count() == 1
    if kind == "known recipient":
        assert Recipient.objects.get(address=to).status == "delivered"
        assert Address.objects.get(address=to).last_event_at is not None


@pytest.mark.skipif(
    connection.vendor == "sqlite", reason="several connections at once: PostgreSQL and MariaDB"
)
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("recipients, opens", [(12, 1), (2, 8)])
@pytest.mark.usefixtures("write_path")
def test_one_event_requests_at_once_keep_every_guarantee(webhook_auth, recipients, opens):
    """Eight clients post one event per request at once: every event of 12 recipients
    (deliveries, opens, bounces), each twice; or of 2 recipients with 8 opens each, so
    that requests often find their recipient moved by another after their SELECT (on
    PostgreSQL the unlocked write then falls back to the locked path). Each is stored
    once, each recipient ends at its best status with its first open, bounced addresses
    get the problem status; a 503 (a lock that waited too long, a deadlock) is retried
    as an ESP would."""
    import random
    import threading

    from django.db import connections
    from django.test import Client

    ids = {f"r{i}@example.com": f"pm-{i}" for i in range(recipients)}
    for address, esp_id in ids.items():
        send_with_ids([address], esp_id)
    Address.objects.bulk_create(Address(address=a) for a in ids)
    bounced = {a for n, a in enumerate(ids) if n % 3 == 0}
    payloads = [postmark("Delivery", esp_id, a) for a, esp_id in ids.items()]
    payloads += [
        postmark("Open", esp_id, a, ReceivedAt=f"2026-11-05T16:4{n}:00Z")
        for a, esp_id in ids.items()
        for n in reversed(range(opens))
    ]
    payloads += [postmark("Bounce", ids[a], a) for a in bounced]
    payloads *= 2
    random.Random(20).shuffle(payloads)
    start, answers, errors = threading.Barrier(8), [], []

    def client(part: list[dict]) -> None:
        try:
            http = Client()
            start.wait()
            for payload in part:
                for _attempt in range(50):
                    status = post_json(http, POSTMARK_URL, payload, webhook_auth).status_code
                    answers.append(status)
                    if status == 200:
                        break
        except Exception as exc:  # pragma: no cover - shown by the assertion below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=client, args=(payloads[n::8],)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert set(answers) <= {200, 503}
    assert Event.objects.count() == len(payloads) // 2
    assert not Event.objects.filter(recipient__isnull=True).exists()
    statuses = dict(Recipient.objects.values_list("address", "status"))
    assert statuses == {a: "bounced" if a in bounced else "opened" for a in ids}
    first_open = datetime(2026, 11, 5, 16, 40, tzinfo=UTC)
    assert set(Recipient.objects.values_list("opened_at", flat=True)) == {first_open}
    marked = dict(Address.objects.values_list("address", "status"))
    assert marked == {a: AddressStatus.BOUNCED if a in bounced else "unconfirmed" for a in ids}
    assert not Address.objects.filter(last_event_at__isnull=True).exists()
