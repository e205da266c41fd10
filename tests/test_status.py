"""The status rules (wagtail_maillog.status), without a database."""

from datetime import UTC, datetime, timedelta
from itertools import permutations

import pytest

from wagtail_maillog.status import (
    RANK,
    Current,
    Status,
    fold,
    status_for_event,
    status_for_send_result,
    transition,
)

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_every_status_has_a_rank():
    assert set(RANK) == set(Status.values)


@pytest.mark.parametrize(
    "event_type, reason, expected",
    [
        ("delivered", None, Status.DELIVERED),
        ("bounced", "bounced", Status.BOUNCED),
        ("bounced", "invalid", Status.INVALID),
        ("rejected", "invalid", Status.INVALID),
        ("rejected", "blocked", Status.REJECTED),
        ("autoresponded", None, Status.DELIVERED),
        ("complained", "spam", Status.COMPLAINED),
        ("subscribed", None, None),
        ("unknown", None, None),
        ("inbound", None, None),
    ],
)
def test_event_types_map_to_statuses(event_type, reason, expected):
    assert status_for_event(event_type, reason) == expected


def test_send_results_map_to_statuses():
    assert status_for_send_result("queued") == Status.QUEUED
    assert status_for_send_result("sent") == Status.SENT
    assert status_for_send_result("invalid") == Status.INVALID
    assert status_for_send_result("unknown") == Status.UNKNOWN
    assert status_for_send_result(None) == Status.UNKNOWN


def test_late_delivered_does_not_overwrite_opened_or_clicked():
    for engaged in (Status.OPENED, Status.CLICKED):
        current = Current(engaged, at(5))
        assert transition(current, Status.DELIVERED, at(1)) == current
        assert transition(current, Status.DELIVERED, at(9)) == current


def test_bounced_after_deferred_is_final():
    current = transition(Current(Status.DEFERRED, at(1)), Status.BOUNCED, at(2))
    assert current.status == Status.BOUNCED
    assert transition(current, Status.DEFERRED, at(3)).status == Status.BOUNCED
    assert transition(current, Status.DELIVERED, at(4)).status == Status.BOUNCED


def test_async_bounce_after_delivered_counts():
    assert transition(Current(Status.DELIVERED, at(1)), Status.BOUNCED, at(60)).status == (
        Status.BOUNCED
    )


def test_complaint_beats_everything():
    for status in Status.values:
        if status == Status.UNSUBSCRIBED:
            continue
        after = transition(Current(status, at(1)), Status.COMPLAINED, at(0))
        assert after.status == Status.COMPLAINED, status


def test_same_rank_newer_event_wins():
    current = Current(Status.UNSUBSCRIBED, at(1))
    assert transition(current, Status.COMPLAINED, at(2)).status == Status.COMPLAINED
    assert transition(current, Status.COMPLAINED, at(0)).status == Status.UNSUBSCRIBED


def test_force_is_for_our_own_actions():
    current = Current(Status.FAILED, at(1))
    assert transition(current, Status.PENDING, at(2)).status == Status.FAILED
    assert transition(current, Status.PENDING, at(2), force=True).status == Status.PENDING


def test_fold_gives_the_same_result_in_every_order():
    events = [
        (Status.QUEUED, at(0)),
        (Status.DEFERRED, at(1)),
        (Status.DELIVERED, at(2)),
        (Status.OPENED, at(3)),
        (Status.CLICKED, at(4)),
        (Status.OPENED, at(5)),
    ]
    results = {fold(Current(Status.SENDING, at(0)), list(p)) for p in permutations(events)}
    assert results == {Current(Status.CLICKED, at(4))}


def test_fold_of_same_rank_ties_is_order_free():
    events = [(Status.COMPLAINED, at(3)), (Status.UNSUBSCRIBED, at(3)), (Status.REJECTED, None)]
    results = {fold(Current(Status.SENT, at(0)), list(p)) for p in permutations(events)}
    assert len(results) == 1


def test_fold_of_a_repeated_status_beside_another_of_its_rank_is_order_free():
    # Found by tests/test_load.py: the second "bounced" used to change nothing, so
    # "invalid" (older than it) won when it came last.
    events = [(Status.BOUNCED, at(1)), (Status.INVALID, at(2)), (Status.BOUNCED, at(3))]
    results = {fold(Current(Status.SENT, at(0)), list(p)) for p in permutations(events)}
    assert results == {Current(Status.BOUNCED, at(3))}


def test_a_repeated_status_keeps_when_it_was_first_reached_in_any_order():
    events = [(Status.DEFERRED, at(2)), (Status.DEFERRED, at(1)), (Status.DEFERRED, at(3))]
    results = {fold(Current(Status.SENT, at(0)), list(p)) for p in permutations(events)}
    assert results == {Current(Status.DEFERRED, at(1))}  # DEFERRED_BOUNCE_DAYS counts from it
