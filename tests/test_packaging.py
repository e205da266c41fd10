"""The wheel ships what a site needs: templates, static files, migrations."""

import re
import subprocess
import sys
import tarfile
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


@pytest.fixture(scope="module")
def sdist(tmp_path_factory) -> tarfile.TarFile:
    pytest.importorskip("build", reason="the test extra installs 'build'")
    out = tmp_path_factory.mktemp("sdist")
    subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--no-isolation", "--outdir", str(out)]
        + [str(ROOT)],
        check=True,
        capture_output=True,
    )
    (path,) = out.glob("wagtail_maillog-*.tar.gz")
    return tarfile.open(path)


def test_the_licence_is_in_the_repo_the_wheel_and_the_sdist(wheel, sdist):
    assert "BSD 3-Clause License" in (ROOT / "LICENSE").read_text()
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in wheel.namelist())
    names = sdist.getnames()
    assert any(n.endswith("/LICENSE") for n in names)
    # the docs that checks and commands link to travel with the source
    assert any(n.endswith("/docs/installation.md") for n in names)
    assert any(n.endswith("/docs/images/maillog-list.png") for n in names)


DOCS_URL = "https://github.com/wagtail-maillog/wagtail-maillog/blob/main/docs/"
#: a docs/ path in a message: the relative form an installed site cannot open
RELATIVE_DOC = re.compile(r"(?<![\w/.-])docs/[\w./-]+\.md")
LINKED_DOC = re.compile(re.escape("{DOCS_URL}") + r"([\w.-]+\.md)(#[\w-]+)?")


def _anchors(markdown: str) -> set[str]:
    """GitHub's anchors of the headings of a Markdown file."""
    found = set()
    for heading in re.findall(r"^#+ (.+)$", markdown, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(slug)
    return found


def test_every_doc_a_check_or_command_names_is_an_absolute_url_to_a_real_page():
    """Checks and commands print to people who installed the wheel (no docs/ there)."""
    from wagtail_maillog import checks

    assert checks.DOCS_URL == DOCS_URL
    sources = [ROOT / "wagtail_maillog" / "checks.py"]
    sources += sorted((ROOT / "wagtail_maillog" / "management" / "commands").glob("*.py"))
    linked = 0
    for source in sources:
        text = source.read_text()
        code = "\n".join(  # the strings people see, not the module's own comments
            line for line in text.splitlines() if not line.lstrip().startswith("#")
        )
        code = re.sub(r'^\s*"""[\s\S]*?"""', "", code, count=1)
        assert RELATIVE_DOC.findall(code) == [], f"{source.name} names a relative docs/ path"
        for page, anchor in LINKED_DOC.findall(text):
            linked += 1
            target = ROOT / "docs" / page
            assert target.is_file(), f"{source.name}: {page} is not in docs/"
            if anchor:
                assert anchor[1:] in _anchors(target.read_text()), f"{page}{anchor}"
    assert linked >= 2


def test_the_readme_works_as_a_package_description():
    """PyPI shows the README without the repository: every link and image is absolute."""
    readme = (ROOT / "README.md").read_text()
    for target in re.findall(r"\]\(([^)]+)\)", readme):
        assert target.startswith(("https://", "http://", "#")), target
    assert "DEFAULT_FROM_EMAIL = " in readme


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


def test_the_demo_sites_links_use_its_port():
    """scripts/demo serves on $PORT: the confirmation links must point there."""
    import os

    code = (
        "import sys; sys.path.insert(0, 'example_site');"
        "from example_site import settings; print(settings.WAGTAILADMIN_BASE_URL)"
    )
    env = {k: v for k, v in os.environ.items() if k != "WAGTAILADMIN_BASE_URL"}
    env["PORT"] = "8123"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.stdout.strip() == "http://localhost:8123", done.stderr
    assert "export PORT=" in (ROOT / "scripts" / "demo").read_text()
