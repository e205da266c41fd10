"""The django-q2 schedules this app needs, created after ``migrate``."""

from __future__ import annotations

from typing import Any

PURGE_TASK = "wagtail_maillog.purge.purge_expired"
PURGE_NAME = "wagtail-maillog: purge expired history"


def ensure_schedules(**kwargs: Any) -> None:
    """``post_migrate`` receiver: add the daily purge once (admins may edit it later)."""
    from django_q.models import Schedule

    if not Schedule.objects.filter(func=PURGE_TASK).exists():
        Schedule.objects.create(
            func=PURGE_TASK,
            name=PURGE_NAME,
            schedule_type=Schedule.DAILY,
            repeats=-1,
        )
