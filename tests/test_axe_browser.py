"""axe-core on every page of the app, in Wagtail's light and dark themes.

Each page of the Mail menu (and the dashboard panel) is opened in headless
Chromium as a superuser whose Wagtail profile is set to the theme, axe-core is
injected, and any *serious* or *critical* WCAG 2.x A/AA violation fails the
test, unless Wagtail's own Users and Snippets listings have the same one on the
same element (the sidebar and header are Wagtail's, not ours).

axe-core comes from the npm registry: ``MAILLOG_AXE_JS`` may point at an
``axe.min.js``; otherwise it is installed once with ``npm install`` into
``test-artifacts/node/``. Without npm (or offline) the test is skipped, except
on CI (``CI=true``), where it fails. Same Chromium/Playwright requirements as
``tests/test_browser.py``, whose fixtures it uses.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.mail import EmailMessage
from django.utils import timezone
from wagtail.users.models import UserProfile

from tests.browser_helpers import make_mail
from tests.test_browser import (  # noqa: F401 (browser, offline_admin, page are fixtures)
    ARTIFACTS,
    PASSWORD,
    ROOT,
    browser,
    offline_admin,
    page,
    shot,
)
from tests.test_deliverability_browser import make_counts
from wagtail_maillog.models import (
    Address,
    Mailing,
    MailingList,
    Message,
    OutboxItem,
    SendState,
)
from wagtail_maillog.outbox import worker

pytestmark = pytest.mark.browser

AXE_VERSION = "4.10.3"
AXE_DIR = ROOT / "test-artifacts" / "node"
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]
BAD = ("serious", "critical")
# Wagtail's own listings: what they violate (on the same element) is not ours to fix.
WAGTAIL_PAGES = {"users": "/admin/users/", "snippets": "/admin/snippets/"}

RUN_AXE = """async (tags) => {
    const result = await axe.run(document, {runOnly: {type: 'tag', values: tags}});
    return result.violations.flatMap(v => v.nodes.map(n => ({
        id: v.id,
        impact: n.impact || v.impact,
        target: n.target.join(' '),
        html: n.html.slice(0, 160),
        summary: (n.failureSummary || '').split('\\n').slice(0, 2).join(' '),
    })));
}"""


def _fail_or_skip(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"axe-core is needed on CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def axe_js() -> Path:
    """The path of axe.min.js, installed from npm on first use."""
    given = os.environ.get("MAILLOG_AXE_JS")
    if given:
        return Path(given)
    target = AXE_DIR / "node_modules" / "axe-core" / "axe.min.js"
    if not target.is_file():
        npm = shutil.which("npm")
        if npm is None:
            _fail_or_skip("npm is not installed (apt-get install npm), or set MAILLOG_AXE_JS")
        AXE_DIR.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [
                npm,
                "install",
                "--no-audit",
                "--no-fund",
                "--prefix",
                str(AXE_DIR),
                f"axe-core@{AXE_VERSION}",
            ],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode != 0 or not target.is_file():
            _fail_or_skip(f"npm install axe-core failed: {done.stderr[-500:]}")
    return target


def violations(tab, axe_js: Path) -> list[dict[str, str]]:
    """Serious and critical axe-core violations of the page as it is now."""
    if not tab.evaluate("typeof axe !== 'undefined'"):
        tab.add_script_tag(path=str(axe_js))
    found = tab.evaluate(RUN_AXE, AXE_TAGS)
    return [v for v in found if v["impact"] in BAD]


def make_outbox(settings) -> OutboxItem:
    """One mail waiting in the outbox after a failed attempt."""
    settings.EMAIL_BACKEND = "wagtail_maillog.outbox.backend.OutboxBackend"
    settings.WAGTAIL_MAILLOG = {
        **settings.WAGTAIL_MAILLOG,
        "CONNECTORS": {"postmark": {"BACKEND": "tests.esp.ScriptedBackend", "ENABLED": False}},
        "DEFAULT_CONNECTOR": "postmark",
        "RETRY_SCHEDULE": [60, 300],
    }
    worker.forget_wake()
    msg = EmailMessage("Invoice 2026-051", "Dear member,", "office@acme.example", ["a@example.com"])
    msg.send()
    now = timezone.now()
    OutboxItem.objects.filter(message_id=msg._maillog_pk).update(
        state=SendState.RETRY_PENDING,
        attempts=1,
        last_error="AnymailAPIError: Postmark API response 503 (Service Unavailable)",
        first_failure_at=now - timedelta(minutes=5),
        last_attempt_at=now - timedelta(minutes=5),
        next_attempt_at=now + timedelta(minutes=55),
        auto_retry=True,
    )
    return OutboxItem.objects.get(message_id=msg._maillog_pk)


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_no_serious_axe_violation_in_light_or_dark(page, live_server, settings, axe_js, theme):  # noqa: F811
    base = live_server.url
    settings.WAGTAIL_MAILLOG = {**getattr(settings, "WAGTAIL_MAILLOG", {}), "STORE_BODY": True}
    data = make_mail(base, timezone.now())
    admin = User.objects.create_superuser("admin", "admin@example.com", PASSWORD)
    profile = UserProfile.get_for_user(admin)
    profile.theme = theme
    profile.save()
    item = make_outbox(settings)
    make_counts()  # the deliverability page and its dashboard panel, with a crossed limit
    mailing = Mailing.objects.create(
        subject="Autumn newsletter", audience="members", created_by=admin
    )
    MailingList.objects.create(name="Board", description="Board members")

    page.goto(f"{base}/admin/login/")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", PASSWORD)
    page.click("form button[type=submit]")
    page.wait_for_url(f"{base}/admin/")
    assert page.locator(f"html.w-theme-{theme}").count() == 1

    bounced = data.messages["inv43"]
    address = (
        Address.objects.exclude(status__in=["unconfirmed", "confirmed", "requested"]).first()
        or Address.objects.first()
    )
    ours = {
        "dashboard": "/admin/",
        "mail-log": "/admin/maillog/",
        "mail-log-bounced": "/admin/maillog/?status=bounced",
        "mail-log-detail": f"/admin/maillog/{bounced.pk}/",
        "mail-log-resend": f"/admin/maillog/{bounced.pk}/resend/",
        "webhooks": "/admin/maillog/webhooks/",
        "deliverability": "/admin/maillog/deliverability/",
        "deliverability-error": "/admin/maillog/deliverability/?period=range&start=2026-02-01",
        "outbox": "/admin/maillog/outbox/",
        "outbox-detail": f"/admin/maillog/outbox/{item.pk}/",
        "connectors": "/admin/maillog/outbox/connectors/",
        "addresses": "/admin/maillog/addresses/",
        "address-detail": f"/admin/maillog/addresses/{address.pk}/",
        "mailings": "/admin/maillog/mailings/",
        "mailing": f"/admin/maillog/mailings/{mailing.pk}/",
        "mailing-lists": "/admin/maillog/lists/",
    }
    assert Message.objects.exists()

    wagtails: set[tuple[str, str]] = set()
    for url in WAGTAIL_PAGES.values():
        page.goto(f"{base}{url}")
        wagtails |= {(v["id"], v["target"]) for v in violations(page, axe_js)}

    problems = []
    for name, url in ours.items():
        page.goto(f"{base}{url}")
        page.wait_for_load_state("networkidle")
        shot(page, f"axe-{theme}-{name}.png")
        for v in violations(page, axe_js):
            if (v["id"], v["target"]) not in wagtails:
                problems.append(
                    f"{name} ({url}): {v['impact']} {v['id']} at {v['target']}: "
                    f"{v['html']} — {v['summary']}"
                )
    assert problems == [], (
        f"{len(problems)} axe-core violations in the {theme} theme:\n" + "\n".join(problems)
    )
    (ARTIFACTS / f"axe-{theme}.ok").write_text("\n".join(ours), encoding="utf-8")
