"""The outbox in a real browser: headless Chromium driven by Playwright.

Logs in, finds the count in the Mail menu, switches views, hides columns with
the column chooser, changes the page size, retries two failed mails through
Wagtail's bulk actions (the worker really sends them, through a scripted
ESP), opens one mail, and checks that the choices survive a new login.
Screenshots go to ``test-artifacts/browser/outbox-*.png``; with
``MAILLOG_UPDATE_DOC_IMAGES=1`` the best two are copied to ``docs/images/``.

Same requirements as ``tests/test_browser.py`` (whose browser fixtures and
helpers this module uses): skipped without Playwright or Chromium, except on
CI (``CI=true``), where that fails.
"""

from __future__ import annotations

import os
import re
import shutil
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, User
from django.core.mail import EmailMessage
from django.utils import timezone

from tests.browser_helpers import ensure_wagtail_root
from tests.esp import ScriptedBackend
from tests.test_browser import (  # noqa: F401 (browser, offline_admin, page are fixtures)
    ARTIFACTS,
    DOC_IMAGES,
    PASSWORD,
    assert_wagtail_styles_loaded,
    browser,
    check_icons,
    offline_admin,
    page,
    shot,
)
from tests.testapp.models import Invoice
from wagtail_maillog import label
from wagtail_maillog.models import OutboxItem, OutboxPreference, SendAttempt
from wagtail_maillog.models import SendState as S
from wagtail_maillog.outbox import worker

pytestmark = pytest.mark.browser

XSS = "<script>alert(1)</script>"
OUTBOX = "/admin/maillog/outbox/"
DOC_SHOTS = {
    "outbox-01-list.png": "outbox-list.png",
    "outbox-02-columns.png": "outbox-columns.png",
}
ERROR_503 = "AnymailAPIError: Postmark API response 503 (Service Unavailable)"


@pytest.fixture
def outbox_settings(settings):
    settings.EMAIL_BACKEND = "wagtail_maillog.outbox.backend.OutboxBackend"
    settings.WAGTAIL_MAILLOG = {
        "CONNECTORS": {
            "postmark": {"BACKEND": "tests.esp.ScriptedBackend"},
            "bulk": {"BACKEND": "tests.esp.ScriptedBackend", "ENABLED": False},
        },
        "DEFAULT_CONNECTOR": "postmark",
        "RETRY_SCHEDULE": [60, 300, 1800],
        "MAX_ATTEMPTS": 5,
    }
    ScriptedBackend.script = []
    ScriptedBackend.calls = []
    worker.forget_wake()
    return settings


def queue(subject, to, user=None, ago=0, attach=False, **labels):
    msg = EmailMessage(subject, "Dear member,\n\n…", "Acme Members <office@acme.example>", to[:1])
    msg.cc = to[1:]
    if attach:
        msg.attach("receipt.pdf", b"%PDF-1.4 receipt", "application/pdf")
    label(msg, user=user, **labels)
    msg.send()
    item = OutboxItem.objects.get(message_id=msg._maillog_pk)
    created = timezone.now() - timedelta(minutes=ago)
    OutboxItem.objects.filter(pk=item.pk).update(created_at=created)
    return item


def failed(item, attempts, error, minutes_ago, next_in=None):
    now = timezone.now()
    state = S.RETRY_PENDING if next_in is not None else S.FAILED
    OutboxItem.objects.filter(pk=item.pk).update(
        state=state,
        attempts=attempts,
        last_error=error,
        first_failure_at=now - timedelta(minutes=minutes_ago),
        last_attempt_at=now - timedelta(minutes=2),
        next_attempt_at=now + timedelta(minutes=next_in) if next_in is not None else None,
        auto_retry=next_in is not None,
    )
    for i in range(attempts):
        SendAttempt.objects.create(
            message_id=item.message_id,
            at=now - timedelta(minutes=minutes_ago - i * 5),
            outcome="failed",
            connector=item.connector,
            error=error,
        )


def make_outbox():
    ensure_wagtail_root()
    office = Group.objects.create(name="Office")
    admin = User.objects.create_superuser(
        "admin", "admin@example.com", PASSWORD, first_name="Ada", last_name="Admin"
    )
    admin.groups.add(office)
    judy = User.objects.create_user("judy", "judy@example.com", "pw", first_name="Judy")
    judy.groups.add(office)
    invoice = Invoice.objects.create(number="2026-051")

    items = {
        "invoice": queue(
            "Invoice 2026-051 from Acme Co.",
            ["alice.martin@example.com"],
            admin,
            ago=180,
            related=invoice,
            source="invoice",
        ),
        "minutes": queue(
            "Board meeting minutes, 4 November",
            ["judy.miller@example.com", "board@acme.example"],
            judy,
            ago=60,
        ),
        "receipt": queue(
            "Receipt for your donation",
            ["ken.adams@example.org"],
            admin,
            ago=45,
            attach=True,
            importance="high",
        ),
        "newsletter": queue(
            "Newsletter — December",
            ["frank.castle@example.com", "grace.hopper@example.com", "erin.brown@example.com"],
            judy,
            ago=20,
            send_at=timezone.now() + timedelta(days=1),
        ),
        "reset": queue(  # in its undo-send window: not due yet
            "Your password reset link",
            ["dave.wilson@example.org"],
            None,
            ago=3,
            undo_seconds=600,
        ),
        "bulk": queue(
            "Event registration confirmed",
            ["heidi.klum@mailbox.example"],
            admin,
            ago=30,
            connector="bulk",
        ),
        "xss": queue(XSS, ["mallory@example.net"], admin, ago=90),
    }
    failed(items["invoice"], 5, ERROR_503, 170)
    failed(items["xss"], 2, "AnymailAPIError: 400 Invalid 'To' address", 80)
    failed(items["minutes"], 2, ERROR_503, 55, next_in=25)
    failed(items["receipt"], 1, "ConnectionResetError: [Errno 104] Connection reset", 40, 4)
    return items


def login(tab, base):
    tab.goto(f"{base}/admin/login/")
    tab.fill("input[name=username]", "admin")
    tab.fill("input[name=password]", PASSWORD)
    tab.click("form button[type=submit]")
    tab.wait_for_url(f"{base}/admin/")


def rows(tab):
    return tab.locator("#listing-results table.maillog-outbox-listing tbody tr[data-outbox-item]")


def headers(tab):
    return [
        h.strip()
        for h in tab.locator("table.maillog-outbox-listing thead th[data-column]").all_inner_texts()
    ]


def test_outbox_in_a_real_browser(page, live_server, outbox_settings, monkeypatch):  # noqa: F811
    base = live_server.url
    with monkeypatch.context() as m:  # set the scene without a worker sending it
        m.setattr(worker, "wake", lambda: None)
        items = make_outbox()
    login(page, base)

    # ---- the Mail menu shows the count, closed and open -------------------------
    mail_menu = page.locator("#wagtail-sidebar").get_by_role("button", name="Mail")
    assert "Mail (7)" in mail_menu.inner_text()  # seen without opening the menu
    mail_menu.click()
    menu_link = page.locator(f'#wagtail-sidebar a[href="{OUTBOX}"]')
    menu_link.wait_for()
    assert "Outbox (7)" in menu_link.inner_text()
    shot(page, "outbox-00-menu.png")

    # ---- the list: a team lead lands on "My team's emails" ---------------------
    menu_link.click()
    page.wait_for_url(f"{base}{OUTBOX}")
    rows(page).first.wait_for()
    assert_wagtail_styles_loaded(page)
    current = page.locator(".maillog-outbox-views a[aria-current=page]")
    assert current.get_attribute("data-outbox-view") == "team"
    assert rows(page).count() == 6  # all but the system mail

    page.locator('.maillog-outbox-views a[data-outbox-view="all"]').click()
    page.wait_for_url(re.compile(r"view=all"))
    rows(page).first.wait_for()
    assert rows(page).count() == 7
    xss_link = page.locator("#listing-results a", has_text=XSS)
    assert xss_link.count() == 1 and xss_link.inner_text() == XSS
    assert page.locator("#listing-results script").count() == 0
    badges = {
        state: page.locator(f'tr .maillog-status[data-status="{state}"]').count()
        for state in ("failed", "retry_pending", "scheduled", "queued", "connector_disabled")
    }
    assert badges == {
        "failed": 2,
        "retry_pending": 2,
        "scheduled": 1,
        "queued": 1,
        "connector_disabled": 1,
    }
    assert page.locator(".maillog-outbox-notice", has_text="bulk").is_visible()
    check_icons(page, "outbox list")
    shot(page, "outbox-01-list.png")

    # ---- it fits: the default columns at 1,400 px, the tabs on a 390 px phone ---------
    assert page.viewport_size["width"] == 1400
    overflow = "el => el.scrollWidth - el.clientWidth"
    assert page.locator(".maillog-outbox-scroll").evaluate(overflow) <= 0
    table = page.locator("table.maillog-outbox-listing").bounding_box()
    assert table and table["x"] + table["width"] <= 1400
    assert page.locator("html").evaluate(overflow) <= 0
    desktop = page.viewport_size
    page.set_viewport_size({"width": 390, "height": 844})
    for tab in page.locator(".maillog-outbox-views a").all():
        box = tab.bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= 390, tab.inner_text()
    assert page.evaluate(
        "() => document.documentElement.scrollWidth <= document.documentElement.clientWidth"
    )
    shot(page, "outbox-01a-phone.png")
    page.set_viewport_size(desktop)

    # ---- Wagtail's "⋯" menu of a row: Open, Quick view, Retry, Cancel sending -----
    row = page.locator(f'tr[data-outbox-item="{items["receipt"].pk}"]')
    more = row.get_by_role("button", name="More options for 'Receipt for your donation'")
    more.click()
    retry_link = row.locator('a[data-action-name="retry"]')
    retry_link.wait_for(state="visible")
    assert row.locator('a[data-action-name="cancel"]').is_visible()
    assert row.locator('a[data-action-name="open"]').get_attribute("href") == (
        f"{OUTBOX}{items['receipt'].pk}/"
    )
    shot(page, "outbox-01b-row-menu.png")
    page.keyboard.press("Escape")
    retry_link.wait_for(state="hidden")

    # ---- the quick view: a Wagtail modal over the list, with Retry and Cancel ----------
    more.click()
    row.locator('a[data-action-name="quick-view"]').click()
    modal = page.locator(".modal [data-maillog-quick-view-body]")
    modal.wait_for(state="visible")
    retry_link.wait_for(state="hidden")  # the row menu closed behind the modal
    assert modal.get_attribute("data-outbox-item") == str(items["receipt"].pk)
    assert modal.get_by_text("ConnectionResetError").is_visible()
    assert modal.locator('a[data-action-name="retry"]').is_visible()
    assert modal.locator('a[data-action-name="cancel"]').is_visible()
    assert page.url.endswith("view=all")  # still on the list
    check_icons(page, "outbox quick view")
    shot(page, "outbox-01c-quick-view.png")
    page.locator(".modal button.close").click()
    modal.wait_for(state="hidden")

    # ---- the column chooser ------------------------------------------------------
    assert headers(page)[:2] == ["To", "Subject"]
    assert "Importance" not in headers(page)  # a compact set until the user chooses
    page.locator(".maillog-outbox-columns > summary").click()
    panel = page.locator(".maillog-outbox-columns__panel")
    panel.wait_for(state="visible")
    assert panel.get_by_role("checkbox", name="To (always shown)").is_disabled()
    assert panel.get_by_role("checkbox", name="Subject (always shown)").is_disabled()
    for name in ("Importance", "Related object"):
        panel.get_by_label(name, exact=True).check()
    panel.get_by_label("Connector", exact=True).uncheck()
    check_icons(page, "column chooser")
    shot(page, "outbox-02-columns.png")
    panel.get_by_role("button", name="Save columns").click()
    page.locator(".messages .success", has_text="display settings were saved").wait_for()
    shown = headers(page)
    assert shown[:2] == ["To", "Subject"]
    assert "Importance" in shown and "Related object" in shown
    assert "Connector" not in shown
    assert "Send state" in shown and "Last failure message" in shown
    shot(page, "outbox-03-columns-saved.png")

    # ---- page size -----------------------------------------------------------------
    page.select_option("#outbox-per-page", "10")
    page.wait_for_url(re.compile(r"per_page=10"))
    rows(page).first.wait_for()
    assert page.locator("#outbox-per-page").input_value() == "10"

    # ---- bulk retry of the two failed mails ----------------------------------------
    picked = [items["invoice"], items["xss"]]
    footer = page.locator("[data-bulk-action-footer]")
    assert footer.is_hidden()
    for item in picked:
        page.locator(f'input[data-bulk-action-checkbox][data-object-id="{item.pk}"]').check()
    footer.wait_for(state="visible")
    retry = footer.locator("a, button", has_text="Retry")
    assert retry.count() == 1
    shot(page, "outbox-04-bulk-selected.png")
    retry.click()
    page.wait_for_url(re.compile(r"/admin/bulk/wagtail_maillog/outboxitem/retry/\?"))
    page.get_by_text("Send these mails again now?").wait_for()
    assert page.locator("main li[data-outbox-item]").count() == 2
    shot(page, "outbox-05-bulk-confirm.png")
    page.get_by_role("button", name="Yes, retry").click()
    page.wait_for_url(re.compile(rf"{re.escape(base)}{OUTBOX}(\?.*)?$"))
    page.locator(".messages .success", has_text="2 mails will be sent again shortly.").wait_for()
    # retry_now woke the (in-process) django-q2 worker: both left through the ESP
    assert sorted(ScriptedBackend.calls) == sorted(i.message.subject for i in picked)
    assert not OutboxItem.objects.filter(pk__in=[i.pk for i in picked]).exists()
    rows(page).first.wait_for()
    assert page.locator(f'tr[data-outbox-item="{items["invoice"].pk}"]').count() == 0
    shot(page, "outbox-06-bulk-done.png")

    # ---- one mail, read-only, with Retry and Cancel ----------------------------------
    page.locator("#listing-results a", has_text="Board meeting minutes").click()
    page.wait_for_url(f"{base}{OUTBOX}{items['minutes'].pk}/")
    page.get_by_role("heading", name="Send attempts").wait_for()
    assert page.locator("main a.button", has_text="Retry").is_visible()
    assert page.locator("main a.button", has_text="Cancel sending").is_visible()
    assert page.locator("main").get_by_text(ERROR_503).first.is_visible()
    check_icons(page, "outbox detail")
    shot(page, "outbox-07-detail.png")
    page.locator("main a.button", has_text="Cancel sending").click()
    page.get_by_role("button", name="Yes, cancel sending").click()
    page.locator(".messages .success", has_text="was cancelled").wait_for()
    assert not OutboxItem.objects.filter(pk=items["minutes"].pk).exists()

    # ---- connectors --------------------------------------------------------------------
    page.goto(f"{base}{OUTBOX}connectors/")
    page.locator("table.maillog-connectors tr[data-connector=bulk]").wait_for()
    check_icons(page, "connectors")
    shot(page, "outbox-08-connectors.png")

    # ---- the choices survive a new login ----------------------------------------------
    page.context.clear_cookies()
    login(page, base)
    page.goto(f"{base}{OUTBOX}")
    rows(page).first.wait_for()
    current = page.locator(".maillog-outbox-views a[aria-current=page]")
    assert current.get_attribute("data-outbox-view") == "all"
    assert page.locator("#outbox-per-page").input_value() == "10"
    assert "Importance" in headers(page) and "Connector" not in headers(page)
    pref = OutboxPreference.objects.get(user__username="admin")
    assert pref.view == "all" and pref.page_size == 10

    if os.environ.get("MAILLOG_UPDATE_DOC_IMAGES"):
        DOC_IMAGES.mkdir(parents=True, exist_ok=True)
        for source, target in DOC_SHOTS.items():
            shutil.copyfile(ARTIFACTS / source, DOC_IMAGES / target)

    # a request the browser dropped because the page moved on is no defect
    page.watch.failed = [f for f in page.watch.failed if "net::ERR_ABORTED" not in f]
    page.watch.check()  # no dialog (the <script> subject), JS error, 404, stray icon
