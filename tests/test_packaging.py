"""The wheel ships what a site needs: templates, static files, migrations."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    pytest.importorskip("build", reason="the test extra installs 'build'")
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--wheel",
            "--no-isolation",
            "--outdir",
            str(out),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (path,) = out.glob("wagtail_maillog-*.whl")
    return zipfile.ZipFile(path)


def test_wheel_contains_templates_static_and_migrations(wheel):
    names = set(wheel.namelist())
    for required in (
        "wagtail_maillog/migrations/0001_initial.py",
        "wagtail_maillog/templates/wagtail_maillog/detail.html",
        "wagtail_maillog/templates/wagtail_maillog/tables/listing.html",
        "wagtail_maillog/static/wagtail_maillog/css/maillog.css",
        "wagtail_maillog/webhook_urls.py",
        "wagtail_maillog/management/commands/maillog_export.py",
    ):
        assert required in names, required
    assert not any(n.startswith(("tests/", "example_site/")) for n in names)


def test_wheel_metadata_names_the_supported_stack(wheel):
    (metadata,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    text = wheel.read(metadata).decode()
    for requirement in (
        "Requires-Dist: wagtail",
        "Requires-Dist: django-anymail",
        "Requires-Dist: django-q2",
        "Requires-Dist: django-tables2",
    ):
        assert requirement in text
    assert "Framework :: Wagtail :: 7" in text and "Framework :: Django :: 5.2" in text


@pytest.mark.django_db
def test_migrations_are_complete():
    """A model change without its migration fails here, not on a user's site."""
    from django.core.management import call_command

    call_command("makemigrations", "wagtail_maillog", "--check", "--dry-run", verbosity=0)
