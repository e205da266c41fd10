"""System checks name configuration mistakes early."""

import pytest
from django.core.checks import run_checks

# Model checks ask SQLite whether it has JSON (a query): allowed, in any test order.
pytestmark = pytest.mark.django_db


def ids(settings_override, settings) -> set[str]:
    for key, value in settings_override.items():
        setattr(settings, key, value)
    return {m.id for m in run_checks() if m.id and m.id.startswith("wagtail_maillog")}


def test_a_good_configuration_is_quiet(settings):
    assert ids({}, settings) == set()


def test_missing_webhook_secret(settings):
    assert "wagtail_maillog.W001" in ids({"ANYMAIL": {}}, settings)


def test_outbox_without_connectors_or_worker(settings):
    found = ids(
        {"EMAIL_BACKEND": "wagtail_maillog.outbox.backend.OutboxBackend", "Q_CLUSTER": None},
        settings,
    )
    assert {"wagtail_maillog.E001", "wagtail_maillog.W002"} <= found


def test_connector_that_is_not_a_backend(settings):
    settings.WAGTAIL_MAILLOG = {
        "CONNECTORS": {
            "typo": {"BACKEND": "anymail.backends.postmarc.EmailBackend"},
            "loop": {"BACKEND": "wagtail_maillog.outbox.backend.OutboxBackend"},
            "ok": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"},
        }
    }
    found = [m for m in run_checks() if m.id in ("wagtail_maillog.E002", "wagtail_maillog.E003")]
    assert sorted(m.id for m in found) == ["wagtail_maillog.E002", "wagtail_maillog.E003"]
    assert "postmarc" in found[0].msg or "postmarc" in found[1].msg


def test_retention_off(settings):
    settings.WAGTAIL_MAILLOG = {"RETENTION_DAYS": None}
    assert "wagtail_maillog.W003" in {m.id for m in run_checks()}


def test_outbox_as_django_61_mailers_default_is_seen(settings):
    found = ids(
        {
            "MAILERS": {"default": {"BACKEND": "wagtail_maillog.outbox.backend.OutboxBackend"}},
            "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
            "Q_CLUSTER": None,
        },
        settings,
    )
    assert {"wagtail_maillog.E001", "wagtail_maillog.W002"} <= found


def test_sqlite_file_without_lock_waiting(settings, monkeypatch):
    """A SQLite file (not a test's in-memory database) needs IMMEDIATE and a timeout."""
    from django.db import connections

    def with_options(options: dict) -> set[str]:
        live = dict(connections["default"].settings_dict, NAME="/srv/site/db.sqlite3")
        monkeypatch.setattr(connections["default"], "settings_dict", live)
        monkeypatch.setitem(connections.settings, "default", dict(live, OPTIONS=options))
        return ids({}, settings)

    if connections["default"].vendor != "sqlite":
        assert "wagtail_maillog.W007" not in ids({}, settings)
        return
    assert "wagtail_maillog.W007" in with_options({})
    assert "wagtail_maillog.W007" in with_options({"transaction_mode": "IMMEDIATE"})
    assert "wagtail_maillog.W007" in with_options({"timeout": 20})
    good = {"transaction_mode": "IMMEDIATE", "timeout": 20}
    assert "wagtail_maillog.W007" not in with_options(good)
