"""The mail log in a real browser: headless Chromium driven by Playwright.

Logs in through the login form, filters through Wagtail's filter drawer,
opens a message, resends it, and resends two rows through Wagtail's bulk
actions. Screenshots go to ``test-artifacts/browser/``; with
``MAILLOG_UPDATE_DOC_IMAGES=1`` the best ones are also copied to ``docs/images/``.

Needs ``playwright`` (Python) and a Chromium binary: ``MAILLOG_CHROMIUM``,
default ``/usr/bin/chromium`` (``playwright install`` is not needed). Without
them the tests are skipped, except when ``CI=true``, where they fail.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from tests.browser_helpers import HARD_BOUNCE_MTA, XSS, ensure_wagtail_root, make_mail
from wagtail_maillog.models import Message, Recipient

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("MAILLOG_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts" / "browser"
DOC_IMAGES = ROOT / "docs" / "images"
DOC_SHOTS = {  # screenshot in ARTIFACTS -> name in docs/images
    "01-list.png": "maillog-list.png",
    "01-list-dark.png": "maillog-list-dark.png",
    "02-filtered-bounced.png": "maillog-filtered.png",
    "04-detail.png": "maillog-detail.png",
    "04-detail-dark.png": "maillog-detail-dark.png",
    "06-resent.png": "maillog-resend.png",
}
TIMEOUT_MS = 10_000
LOG = "/admin/maillog/"
PASSWORD = "correct horse battery staple"


def _missing() -> str:
    """Why the browser tests cannot run here, or ""."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install playwright)"
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return f"no Chromium at {CHROMIUM} (install chromium or set MAILLOG_CHROMIUM)"
    return ""


@pytest.fixture(scope="module")
def browser():
    reason = _missing()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"browser tests cannot run on CI: {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop running in this thread, so Django
    # would refuse the (synchronous, safe) ORM calls the test makes between steps.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            yield browser
            browser.close()


@pytest.fixture
def offline_admin(settings):
    """No calls from the admin to the internet (avatars, Wagtail's update check)."""
    settings.WAGTAIL_GRAVATAR_PROVIDER_URL = None
    settings.WAGTAIL_ENABLE_UPDATE_CHECK = False


class PageWatch:
    """What went wrong in the page while the test drove it."""

    def __init__(self, page, origin: str) -> None:
        self.origin = origin
        self.dialogs: list[str] = []
        self.page_errors: list[str] = []
        self.failed: list[str] = []
        self.external: list[str] = []
        self.visual: list[str] = []
        page.on("dialog", self._dialog)
        page.on("pageerror", lambda exc: self.page_errors.append(str(exc)))
        page.on("response", self._response)
        page.on("requestfailed", self._request_failed)

    def _dialog(self, dialog) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def _response(self, response) -> None:
        if response.status >= 400:
            self.failed.append(f"{response.status} {response.url}")

    def _request_failed(self, request) -> None:
        # A request the browser dropped because the page moved on (net::ERR_ABORTED,
        # e.g. the favicon during a navigation) is not a failure of our server.
        if request.url.startswith(self.origin) and "ERR_ABORTED" not in (request.failure or ""):
            self.failed.append(f"failed {request.url}: {request.failure}")

    def check(self) -> None:
        assert self.dialogs == [], f"a dialog opened: {self.dialogs}"
        assert self.page_errors == [], f"JavaScript errors: {self.page_errors}"
        assert self.failed == [], f"failed requests: {self.failed}"
        assert self.external == [], f"requests to other sites: {self.external}"
        assert self.visual == [], "visual defects:\n" + "\n".join(self.visual)


@pytest.fixture
def page(browser, live_server, offline_admin):
    ensure_wagtail_root()  # an earlier transactional test may have flushed it
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1400, "height": 900}, locale="en-GB")
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(live_server.url))
    page.watch = PageWatch(page, origin)

    def only_the_live_server(route) -> None:
        if route.request.url.startswith(origin) or route.request.url.startswith("data:"):
            route.continue_()
        else:
            page.watch.external.append(route.request.url)
            route.abort()

    context.route("**/*", only_the_live_server)
    try:
        yield page
    finally:
        if not page.is_closed():  # the last state of the page, for a failed run
            page.screenshot(path=str(ARTIFACTS / "last-page.png"), full_page=True)
            (ARTIFACTS / "last-page.html").write_text(page.content(), encoding="utf-8")
        context.close()


def shot(page, name: str) -> None:
    """A full-page screenshot, once animations (messages sliding in) are done.

    Wagtail scrolls ``main#main``, not the document, so ``full_page`` alone
    would stop at the viewport: the viewport grows to the content meanwhile.
    """
    viewport = page.viewport_size
    overflow = page.evaluate(
        "() => { const m = document.querySelector('main#main');"
        " return m ? m.scrollHeight - m.clientHeight : 0; }"
    )
    if overflow > 0:
        page.set_viewport_size({**viewport, "height": viewport["height"] + overflow})
    try:
        page.screenshot(path=str(ARTIFACTS / name), full_page=True, animations="disabled")
    finally:
        if overflow > 0:
            page.set_viewport_size(viewport)


def dark_shot(page, name: str) -> None:
    """The same page in Wagtail's dark theme (the default theme follows the system's)."""
    page.emulate_media(color_scheme="dark")
    try:
        shot(page, name)
    finally:
        page.emulate_media(color_scheme="light")


def check_icons(page, where: str) -> None:
    """Every visible Wagtail icon in the page content is icon-sized (≤ 32 px).

    An ``svg.icon`` without a size rule takes the SVG default of 300×150 px.
    """
    for problem in page.evaluate(
        """() => [...document.querySelectorAll('main svg.icon, #listing-results svg.icon')]
            .filter(svg => svg.getClientRects().length)
            .map(svg => [svg, svg.getBoundingClientRect()])
            .filter(([svg, box]) => box.width > 32 || box.height > 32)
            .map(([svg, box]) => {
                const host = svg.closest('a, button') || svg.parentElement;
                return `${Math.round(box.width)}×${Math.round(box.height)} px `
                    + `${svg.getAttribute('class')} in <${host.tagName.toLowerCase()} `
                    + `class="${host.className}"> ${host.textContent.trim()}`;
            })"""
    ):
        page.watch.visual.append(f"{where}: icon {problem}")


def login(page, base: str) -> None:
    User.objects.create_superuser("admin", "admin@example.com", PASSWORD)
    page.goto(f"{base}/admin/login/")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", PASSWORD)
    page.click("form button[type=submit]")
    page.wait_for_url(f"{base}/admin/")


def listed_rows(page):
    return page.locator("#listing-results table.maillog-listing tbody tr[data-recipient]")


def assert_wagtail_styles_loaded(page) -> None:
    """Wagtail's CSS, JS and sprite are served: the admin looks like the admin."""
    token = page.evaluate(
        "getComputedStyle(document.documentElement).getPropertyValue('--w-color-primary')"
    )
    assert token.strip(), "Wagtail's core.css did not load (no --w-color-primary)"
    sidebar = page.locator("#wagtail-sidebar")
    sidebar.get_by_role("button", name="Mail").wait_for()  # rendered by Wagtail's JS
    assert page.locator("#icon-mail").count() == 1, "Wagtail's icon sprite is missing"
    linked = page.evaluate("[...document.styleSheets].map(s => s.href || '')")
    assert any("maillog.css" in href for href in linked), "maillog.css is not linked"


def test_mail_log_in_a_real_browser(page, live_server, settings):
    settings.WAGTAIL_MAILLOG = {**getattr(settings, "WAGTAIL_MAILLOG", {}), "STORE_BODY": True}
    base = live_server.url
    data = make_mail(base, timezone.now())
    login(page, base)

    # ---- the list --------------------------------------------------------
    page.goto(f"{base}{LOG}")
    rows = listed_rows(page)
    rows.first.wait_for()
    assert rows.count() == data.recipients == 13
    assert_wagtail_styles_loaded(page)
    # the subject is shown as text, not run
    xss_link = page.locator("#listing-results a", has_text=XSS)
    assert xss_link.count() == 1 and xss_link.inner_text() == XSS
    assert page.locator("#listing-results script").count() == 0
    # status badges: a Wagtail icon each, and a colour per outcome
    colours = {}
    for status in ("bounced", "delivered", "opened", "queued"):
        badge = page.locator(f'.maillog-status[data-status="{status}"]').first
        assert badge.locator("svg.icon").count() == 1, status
        colours[status] = badge.evaluate("e => getComputedStyle(e).color")
    assert colours["bounced"] != colours["delivered"] != colours["queued"]
    check_icons(page, "list")
    # Wagtail's look: the default sort marked, "… ago" dates with the exact time on hover
    date_header = page.locator('#listing-results th[data-column="created_at"]')
    assert date_header.get_attribute("aria-sort") == "descending"
    first_date = rows.first.locator("button.w-human-readable-date")
    assert re.fullmatch(r"\d+\s+minutes? ago|Just now", first_date.inner_text().strip())
    first_date.hover()
    page.locator("[data-w-tooltip-target], .w-tooltip, [role=tooltip]").filter(
        has_text=re.compile(r"\d{4}")
    ).first.wait_for()
    page.mouse.move(0, 0)
    shot(page, "01-list.png")
    dark_shot(page, "01-list-dark.png")
    # the exports are in the header's "Actions" menu, as in Wagtail's own listings
    page.get_by_role("button", name="Actions").click()
    download = page.get_by_role("link", name="Download CSV")
    download.wait_for()
    assert "export=csv" in download.get_attribute("href")
    page.keyboard.press("Escape")

    # ---- filter by status through Wagtail's filter drawer ------------------
    page.get_by_role("button", name="Show filters").click()
    drawer = page.locator("#filters-drilldown")
    drawer.locator("button.w-drilldown__toggle", has_text="Status").click()
    status_menu = drawer.locator("#drilldown-id_status")
    status_menu.wait_for(state="visible")
    with page.expect_response(re.compile(r"/admin/maillog/results/\?.*status=bounced")):
        status_menu.get_by_label("Bounced", exact=True).check()
    page.wait_for_function(
        """() => {
            const rows = document.querySelectorAll('#listing-results tbody tr[data-recipient]');
            return rows.length > 0 && [...rows].every(
                r => r.querySelector('.maillog-status[data-status="bounced"]'));
        }"""
    )
    assert rows.count() == len(data.bounced) == 3
    shown = {rows.nth(i).locator("td").nth(3).inner_text().strip() for i in range(rows.count())}
    assert shown == data.bounced
    assert "status=bounced" in page.url  # the URL reflects the filter
    shot(page, "02a-filter-drawer.png")
    page.keyboard.press("Escape")  # close the drawer
    status_menu.wait_for(state="hidden")
    # Wagtail shows the active filter as a pill above the results
    page.locator("[data-w-active-filter-id]", has_text="Bounced").first.wait_for()
    shot(page, "02-filtered-bounced.png")

    # ---- a row's "More" menu: Open, Resend; no Cancel once it has left ----------
    original = data.messages["inv43"]
    row = rows.filter(has=page.locator("a", has_text="Invoice 2026-043 from Acme Co.")).first
    row.get_by_role("button", name="More options for 'Invoice 2026-043 from Acme Co.'").click()
    resend_item = row.locator('a[data-action-name="resend"]')
    resend_item.wait_for(state="visible")
    assert resend_item.get_attribute("href") == f"{LOG}{original.pk}/resend/"
    assert row.locator('a[data-action-name="open"]').get_attribute("href") == (
        f"{LOG}{original.pk}/"
    )
    assert row.locator('a[data-action-name="cancel"]').count() == 0  # bounced: nothing to stop
    check_icons(page, "row menu")
    shot(page, "03-row-menu.png")
    page.keyboard.press("Escape")
    resend_item.wait_for(state="hidden")

    # ---- one message -----------------------------------------------------
    page.locator("#listing-results a", has_text="Invoice 2026-043 from Acme Co.").click()
    page.wait_for_url(f"{base}{LOG}{original.pk}/")
    timeline = page.locator("ol.maillog-timeline")
    timeline.wait_for()
    assert timeline.locator("li[data-event=bounced]").count() == 1
    assert timeline.locator("code", has_text=HARD_BOUNCE_MTA).is_visible()
    assert timeline.get_by_text("MTA response").is_visible()
    envelope = page.locator(".maillog-envelope")
    assert envelope.get_by_text("Invoice 2026-043 from Acme Co.").is_visible()
    check_icons(page, "detail")
    # raw ESP payloads: indented JSON, not a Python dict
    page.locator("details summary", has_text="Bounced").first.click()
    raw = page.locator("pre[data-raw-payload]").first
    assert raw.inner_text().startswith('{\n  "') and "'" not in raw.inner_text()[:40]
    shot(page, "04-detail.png")
    dark_shot(page, "04-detail-dark.png")

    # ---- resend it -------------------------------------------------------
    page.locator("main a.button", has_text="Resend").click()
    page.wait_for_url(f"{base}{LOG}{original.pk}/resend/")
    confirm = page.get_by_role("button", name="Yes, resend")
    confirm.wait_for()
    check_icons(page, "resend confirmation")
    # the address bounced: not ticked, and the page says why
    carol = page.get_by_role("checkbox", name=re.compile("carol.white@exmaple.com"))
    assert not carol.is_checked()
    assert page.get_by_text("Not ticked: the address's status is").is_visible()
    shot(page, "05-resend-confirm.png")
    carol.check()  # ticked anyway: the resend says who got nothing
    confirm.click()
    warning = page.locator(
        ".messages .warning", has_text="Not sent to 1 recipient because of the address's status"
    )
    warning.wait_for()
    assert "carol.white@exmaple.com" in warning.inner_text()
    resent = Message.objects.filter(resent_from=original)
    assert resent.count() == 1
    new = resent.get()
    assert page.url == f"{base}{LOG}{new.pk}/"
    assert [r.address for r in new.recipients.all()] == ["carol.white@exmaple.com"]
    assert envelope.get_by_text("Resend of").is_visible()
    shot(page, "06-resent.png")

    # ---- bulk resend of two rows ------------------------------------------
    page.goto(f"{base}{LOG}")
    rows.first.wait_for()
    first, second = data.messages["renewal"], data.messages["welcome"]
    picked = [Recipient.objects.get(message=m).pk for m in (first, second)]
    footer = page.locator("[data-bulk-action-footer]")
    assert footer.is_hidden()
    for pk in picked:
        page.locator(f'input[data-bulk-action-checkbox][data-object-id="{pk}"]').check()
    footer.wait_for(state="visible")
    assert re.search(r"\b2\b", footer.inner_text()), footer.inner_text()
    resend_action = footer.locator("a, button", has_text="Resend")
    assert resend_action.count() == 1 and resend_action.is_visible()
    shot(page, "07-bulk-selected.png")
    resend_action.click()
    page.wait_for_url(re.compile(r"/admin/bulk/wagtail_maillog/recipient/resend/\?"))
    page.get_by_text("Send these mails again?").wait_for()
    items = page.locator("main li")
    assert items.count() == 2
    shot(page, "08-bulk-confirm.png")
    page.get_by_role("button", name="Yes, resend").click()
    page.wait_for_url(re.compile(rf"{re.escape(base)}{LOG}(\?.*)?$"))
    page.locator(".messages .success", has_text="Sent again to 2 recipients.").wait_for()
    shot(page, "09-bulk-done.png")
    for message in (first, second):
        again = Message.objects.filter(resent_from=message)
        assert again.count() == 1
        assert [r.address for r in again.get().recipients.all()] == [
            r.address for r in message.recipients.all()
        ]

    if os.environ.get("MAILLOG_UPDATE_DOC_IMAGES"):
        DOC_IMAGES.mkdir(parents=True, exist_ok=True)
        for source, target in DOC_SHOTS.items():
            shutil.copyfile(ARTIFACTS / source, DOC_IMAGES / target)

    page.watch.check()  # no dialog (the <script> subject), JS error, 404, stray icon
