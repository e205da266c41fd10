"""The django-q2 schedules this app needs, created after ``migrate``."""

from __future__ import annotations

from typing import Any

PURGE_TASK = "wagtail_maillog.purge.purge_expired"
PURGE_NAME = "wagtail-maillog: purge expired history"
DEFERRED_TASK = "wagtail_maillog.addresses.health.expire_deferred"
DEFERRED_NAME = "wagtail-maillog: long-deferred mail counts as bounced"
OUTBOX_TASK = "wagtail_maillog.outbox.worker.process_outbox"
OUTBOX_NAME = "wagtail-maillog: send due mail (retries, scheduled, undo-send)"
RECONCILE_TASK = "wagtail_maillog.reconcile.reconcile"
RECONCILE_NAME = "wagtail-maillog: reconcile lost webhooks"
MAILING_TASK = "wagtail_maillog.mailings.sending.start_due"
MAILING_NAME = "wagtail-maillog: start scheduled mailings"
ROLLUP_TASK = "wagtail_maillog.deliverability.rollup.catch_up"
ROLLUP_NAME = "wagtail-maillog: count deliverability figures"


def ensure_schedules(**kwargs: Any) -> None:
    """``post_migrate`` receiver: add our schedules once (admins may edit them later)."""
    from django_q.models import Schedule

    every_minute = {"schedule_type": Schedule.MINUTES, "minutes": 1}
    wanted = [
        (DEFERRED_TASK, DEFERRED_NAME, {"schedule_type": Schedule.HOURLY}),
        (OUTBOX_TASK, OUTBOX_NAME, every_minute),
        (MAILING_TASK, MAILING_NAME, every_minute),
        (ROLLUP_TASK, ROLLUP_NAME, every_minute),
        (RECONCILE_TASK, RECONCILE_NAME, {"schedule_type": Schedule.HOURLY}),
        (PURGE_TASK, PURGE_NAME, {"schedule_type": Schedule.DAILY}),
    ]
    for func, name, timing in wanted:
        if not Schedule.objects.filter(func=func).exists():
            Schedule.objects.create(func=func, name=name, repeats=-1, **timing)
