"""Outbox badge: the menu's "Outbox (n)" count beside a million logged messages.

    python -m benchmarks.outbox_badge [--quick]

Fills 1,000,000 messages (5,000 with --quick), puts 10,000 of them (500) in
the outbox, then times :func:`wagtail_maillog.outbox.access.outbox_count`,
the function the menu item calls once per admin page, for a superuser and for
an editor who sees only their own and their team's mail (a few hundred of the
waiting ones are theirs). Median of 20 calls, each on a new request. Target:
at most 5 ms.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from .harness import Figure, figure, log, main

MEASURE = "outbox badge"
TARGET_MS = 5
CALLS = 20


def fill_outbox(items: int, editor: Any, team: Any) -> None:
    """``items`` outbox rows for the newest messages; one in twenty the editor's or the team's."""
    from django.db import transaction

    from wagtail_maillog.models import Message, OutboxItem, SendState

    ids = list(Message.objects.order_by("-pk").values_list("pk", flat=True)[:items])
    theirs = ids[::20]
    with transaction.atomic():
        Message.objects.filter(pk__in=theirs[::2]).update(created_by=editor)
        Message.objects.filter(pk__in=theirs[1::2]).update(team=team)
        OutboxItem.objects.bulk_create(
            (
                OutboxItem(
                    message_id=pk,
                    connector="default",
                    state=SendState.QUEUED if n % 10 else SendState.RETRY_PENDING,
                    payload=b"payload",
                    payload_mac="0" * 64,
                )
                for n, pk in enumerate(ids)
            ),
            batch_size=1000,
        )


def users() -> tuple[Any, Any, Any]:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group, Permission

    model = get_user_model()
    admin = model.objects.create_superuser("bench", "bench@example.com", "bench")
    team = Group.objects.create(name="Support team")
    team.permissions.add(
        Permission.objects.get(codename="view_message", content_type__app_label="wagtail_maillog"),
        Permission.objects.get(codename="access_admin"),
    )
    editor = model.objects.create_user("editor", "editor@example.com", "editor")
    editor.groups.add(team)
    return admin, editor, team


def time_count(user: Any) -> tuple[float, int]:
    """Median milliseconds of the menu count for ``user``, and the count."""
    from django.contrib.auth import get_user_model
    from django.test import RequestFactory

    from wagtail_maillog.outbox.access import TEAM_ATTRIBUTE, outbox_count

    factory = RequestFactory()
    user = get_user_model().objects.get(pk=user.pk)  # fresh permission caches
    runs, count = [], 0
    for _ in range(CALLS + 1):
        request = factory.get("/admin/")
        request.user = user
        user.__dict__.pop(TEAM_ATTRIBUTE, None)  # our team lookup, as on each request
        start = time.perf_counter()
        count = outbox_count(request)
        runs.append((time.perf_counter() - start) * 1000)
    # The first call fills Django's permission cache, which every admin page fills anyway.
    return statistics.median(runs[1:]), count


def measure(messages: int, items: int) -> list[Figure]:
    from .generate import generate

    filled = generate(messages)
    log(f"filled {messages:,} messages in {filled['seconds']} s")
    admin, editor, team = users()
    fill_outbox(items, editor, team)
    from .harness import analyze

    analyze()
    figures = [
        figure(MEASURE, "messages in the log", messages),
        figure(MEASURE, "mails in the outbox", items),
    ]
    for who, user in (("superuser", admin), ("editor (own + team)", editor)):
        ms, count = time_count(user)
        log(f"{who}: {ms:.2f} ms for a count of {count:,}")
        figures.append(
            figure(
                MEASURE, f"menu count, {who}", ms, "ms", at_most=TARGET_MS, note=f"n = {count:,}"
            )
        )
    return figures


def run(quick: bool) -> list[Figure]:
    return measure(5_000, 500) if quick else measure(1_000_000, 10_000)


if __name__ == "__main__":
    main(run, __doc__)
