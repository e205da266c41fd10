"""System checks name configuration mistakes early."""

import sys
from pathlib import Path

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

    settings.EMAIL_BACKEND = "wagtail_maillog.outbox.backend.OutboxBackend"  # a worker writes
    if connections["default"].vendor != "sqlite":
        assert "wagtail_maillog.W007" not in ids({}, settings)
        return
    assert "wagtail_maillog.W007" in with_options({})
    assert "wagtail_maillog.W007" in with_options({"transaction_mode": "IMMEDIATE"})
    assert "wagtail_maillog.W007" in with_options({"timeout": 20})
    good = {"transaction_mode": "IMMEDIATE", "timeout": 20}
    assert "wagtail_maillog.W007" not in with_options(good)


def test_sqlite_without_the_outbox_is_not_warned_about(settings, monkeypatch):
    """A fresh SQLite project without the outbox has no worker writing beside it: no W007."""
    from django.db import connections

    live = dict(connections["default"].settings_dict, NAME="/srv/site/db.sqlite3")
    monkeypatch.setattr(connections["default"], "settings_dict", live)
    monkeypatch.setitem(connections.settings, "default", dict(live, OPTIONS={}))
    settings.EMAIL_BACKEND = "anymail.backends.test.EmailBackend"
    assert "wagtail_maillog.W007" not in ids({}, settings)


@pytest.mark.parametrize(
    "backend",
    [
        "django.core.mail.backends.console.EmailBackend",
        "django.core.mail.backends.filebased.EmailBackend",
        "django.core.mail.backends.locmem.EmailBackend",
        "django.core.mail.backends.smtp.EmailBackend",
    ],
)
def test_a_backend_that_records_nothing_is_warned_about(settings, backend):
    settings.EMAIL_BACKEND = backend
    found = [m for m in run_checks() if m.id == "wagtail_maillog.W008"]
    assert len(found) == 1 and backend in found[0].msg
    assert "anymail.backends.console.EmailBackend" in found[0].hint


@pytest.mark.parametrize(
    "backend",
    [
        "anymail.backends.postmark.EmailBackend",
        "anymail.backends.console.EmailBackend",
        "wagtail_maillog.outbox.backend.OutboxBackend",
    ],
)
def test_backends_that_record_are_not_warned_about(settings, backend):
    settings.EMAIL_BACKEND = backend
    assert "wagtail_maillog.W008" not in {m.id for m in run_checks()}


def test_django_61_mailers_default_decides(settings):
    settings.EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"
    settings.MAILERS = {"default": {"BACKEND": "django.core.mail.backends.smtp.EmailBackend"}}
    found = [m for m in run_checks() if m.id == "wagtail_maillog.W008"]
    assert len(found) == 1 and found[0].msg.startswith('MAILERS["default"]["BACKEND"]')


def test_wagtail_starts_dev_settings_are_named_as_the_one_that_wins(
    settings, tmp_path, monkeypatch
):
    """`wagtail start` sets the console backend in settings/dev.py, over base.py's."""
    import importlib
    import shutil

    import wagtail

    package = tmp_path / "startedsite" / "settings"
    package.mkdir(parents=True)
    (tmp_path / "startedsite" / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "base.py").write_text('EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"\n')
    template = Path(wagtail.__file__).parent / "project_template/project_name/settings/dev.py"
    shutil.copy(template, package / "dev.py")  # Wagtail's own, unchanged
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("startedsite", "startedsite.settings", "startedsite.settings.base"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.delitem(sys.modules, "startedsite.settings.dev", raising=False)
    dev = importlib.import_module("startedsite.settings.dev")
    settings.EMAIL_BACKEND = dev.EMAIL_BACKEND
    settings.SETTINGS_MODULE = "startedsite.settings.dev"  # last: each override is a layer
    (found,) = [m for m in run_checks() if m.id == "wagtail_maillog.W008"]
    assert "set in startedsite.settings.dev" in found.msg
    assert "'anymail.backends.postmark.EmailBackend' of startedsite.settings.base" in found.msg


@pytest.mark.parametrize(
    ("backend", "mailing", "warned"),
    [
        ("anymail.backends.mandrill.EmailBackend", {}, True),  # batches, no merge_headers
        ("anymail.backends.mandrill.EmailBackend", {"MERGE_HEADERS": True}, False),
        ("anymail.backends.mandrill.EmailBackend", {"BATCH_SIZE": 1}, False),
        ("anymail.backends.mailgun.EmailBackend", {}, False),  # has merge_headers
        ("anymail.backends.postmark.EmailBackend", {}, False),  # never batches
        ("tests.esp.ScriptedBackend", {"MERGE_FIELD": "{{{{{}}}}}"}, False),  # a subclass
        ("django.core.mail.backends.smtp.EmailBackend", {"MERGE_FIELD": "{{{{{}}}}}"}, True),
    ],
)
def test_a_mailing_connector_without_per_member_unsubscribe_headers(
    settings, backend, mailing, warned
):
    settings.WAGTAIL_MAILLOG = {
        **settings.WAGTAIL_MAILLOG,
        "CONNECTORS": {"news": {"BACKEND": backend, "MAILING": mailing}},
    }
    found = [m for m in run_checks() if m.id == "wagtail_maillog.W009"]
    assert bool(found) is warned
    if warned:
        assert "'news'" in found[0].msg and "one message per member" in found[0].msg
