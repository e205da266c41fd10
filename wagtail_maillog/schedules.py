"""The django-q2 schedules this app needs, created after ``migrate``."""

from __future__ import annotations

from typing import Any

PURGE_TASK = "wagtail_maillog.purge.purge_expired"
PURGE_NAME = "wagtail-maillog: purge expired history"
DEFERRED_TASK = "wagtail_maillog.addresses.health.expire_deferred"
DEFERRED_NAME = "wagtail-maillog: long-deferred mail counts as bounced"
OUTBOX_TASK = "wagtail_maillog.outbox.worker.process_outbox"
OUTBOX_NAME = "wagtail-maillog: send due mail (retries, scheduled, undo-send)"


def ensure_schedules(**kwargs: Any) -> None:
    """``post_migrate`` receiver: add our schedules once (admins may edit them later)."""
    from django_q.models import Schedule

    if not Schedule.objects.filter(func=DEFERRED_TASK).exists():
        Schedule.objects.create(
            func=DEFERRED_TASK, name=DEFERRED_NAME, schedule_type=Schedule.HOURLY, repeats=-1
        )
    if not Schedule.objects.filter(func=OUTBOX_TASK).exists():
        Schedule.objects.create(
            func=OUTBOX_TASK,
            name=OUTBOX_NAME,
            schedule_type=Schedule.MINUTES,
            minutes=1,
            repeats=-1,
        )

    if not Schedule.objects.filter(func=PURGE_TASK).exists():
        Schedule.objects.create(
            func=PURGE_TASK,
            name=PURGE_NAME,
            schedule_type=Schedule.DAILY,
            repeats=-1,
        )
