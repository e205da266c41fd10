"""Asking django-q2 for a task leaves the caller's database connection open
(wagtail_maillog/tasks.py): django-q2's ORM broker closes "old" connections before
its queries, and with ``CONN_MAX_AGE = 0`` every connection is old."""

from __future__ import annotations

import pytest
from django.core.mail import EmailMessage
from django.db import connection

from wagtail_maillog.mailings import sending
from wagtail_maillog.outbox import worker

# Autocommit, as after a view's commit (where the outbox wakes a worker).
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def a_real_broker(monkeypatch, settings):
    """Tasks go to the ORM broker's table, as in a site (not the tests' "sync" mode)."""
    from django_q.conf import Conf
    from django_q.models import OrmQ

    if connection.vendor == "sqlite" and connection.is_in_memory_db():
        pytest.skip("Django never closes an in-memory SQLite database (it would be lost)")
    monkeypatch.setattr(Conf, "SYNC", False)
    settings.EMAIL_BACKEND = "wagtail_maillog.outbox.backend.OutboxBackend"
    settings.WAGTAIL_MAILLOG = {"CONNECTORS": {"default": {"BACKEND": "tests.esp.ScriptedBackend"}}}
    monkeypatch.setattr(worker._Helpers, "EVERY", 0)
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 0)
    connection.close()  # reopened with CONN_MAX_AGE 0: old at once
    worker.forget_wake()
    return OrmQ.objects


def _wake() -> None:
    """A mail queued through the outbox, which then wakes a worker."""
    EmailMessage("Queued", "Body", "s@example.com", ["ann@example.com"]).send()


def _start_mailing() -> None:
    sending._start_task(1)


def _ask_for_a_helper() -> None:
    worker._Helpers().ask()


@pytest.mark.parametrize("ask", [_wake, _start_mailing, _ask_for_a_helper])
def test_asking_for_a_task_keeps_the_connection(a_real_broker, ask):
    connection.ensure_connection()
    before = connection.connection
    ask()
    assert connection.connection is before  # not closed, not reopened
    assert a_real_broker.count() == 1  # and the task is queued, committed
