"""The Addresses page and the public confirm page in a real browser (Chromium, Playwright).

Real mail first (``make_mail``: twelve messages, three hard bounces POSTed as
Postmark webhooks, so three addresses have a problem), and members of the
test app. Then: open Addresses from the Mail menu, select two members'
addresses and run the bulk action "Send confirmation request", open the link
of one of the sent mails (``django.core.mail.outbox``) as an anonymous
visitor, click "Confirm my address", and see the address confirmed in the
admin. Screenshots go to ``test-artifacts/browser/addresses-*.png``; with
``MAILLOG_UPDATE_DOC_IMAGES=1`` the best ones are copied to ``docs/images/``.

Same requirements as ``tests/test_browser.py`` (whose browser fixtures and
helpers this module uses): skipped without Playwright or Chromium, except on
CI (``CI=true``), where that fails.
"""

from __future__ import annotations

import os
import re
import shutil
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import pytest
from django.core import mail
from django.db.models import Max
from django.utils import timezone

from tests.browser_helpers import XSS, make_mail
from tests.test_browser import (  # noqa: F401 (browser, offline_admin, page are fixtures)
    ARTIFACTS,
    DOC_IMAGES,
    PageWatch,
    assert_wagtail_styles_loaded,
    browser,
    check_icons,
    dark_shot,
    login,
    offline_admin,
    page,
    shot,
)
from tests.testapp.models import Member
from wagtail_maillog.addresses.health import set_status
from wagtail_maillog.models import Address, AddressStatus, Recipient

pytestmark = pytest.mark.browser

ADDRESSES = "/admin/maillog/addresses/"
DOC_SHOTS = {  # screenshot in ARTIFACTS -> name in docs/images
    "addresses-01-list.png": "addresses-list.png",
    "addresses-01-list-dark.png": "addresses-list-dark.png",
    "addresses-04-bulk-confirm.png": "addresses-bulk.png",
    "addresses-05-confirm-page.png": "addresses-confirm.png",
    "addresses-06-confirmed.png": "addresses-confirmed.png",
    "addresses-07c-cleared.png": "addresses-detail.png",
    "addresses-08-dashboard.png": "addresses-dashboard.png",
}
SUBJECT = "Please confirm your email address"


def make_members() -> dict[str, Member]:
    """Members of the site; saving them records their addresses (unconfirmed)."""
    people = [
        ("Alice Martin", "alice.martin@example.com"),
        ("Bob Jones", "bob.jones@example.com"),
        ("Carol White", "carol.white@exmaple.com"),  # the typo bounced
        ("Dave Wilson", "dave.wilson@example.org"),
        ("Erin Brown", "erin.brown@example.com"),
        ("Frank Castle", "frank.castle@example.com"),
        ("Heidi Klum", "heidi.klum@mailbox.example"),
        ("Ivan Petrov", "ivan.petrov@example.net"),
    ]
    return {email: Member.objects.create(name=name, email=email) for name, email in people}


def spread_over_time(now: datetime) -> None:
    """Times as on a real site: members joined on different days, events when they happened."""
    since = {  # days ago
        "alice.martin@example.com": 41,
        "bob.jones@example.com": 33,
        "dave.wilson@example.org": 12,
        "erin.brown@example.com": 20,
        "frank.castle@example.com": 9,
        "ivan.petrov@example.net": 2,
    }
    for address, days in since.items():
        Address.objects.filter(address=address).update(
            status_at=now - timedelta(days=days, hours=days % 5, minutes=7 * days)
        )
    for address, at in Recipient.objects.values_list("address").annotate(last=Max("status_at")):
        Address.objects.filter(address=address, last_event_at__isnull=False).update(
            last_event_at=at
        )
    for row in Address.objects.filter(status__in=["bounced", "blocked"]):
        row.status_at = row.last_event_at or row.status_at
        row.save(update_fields=["status_at"])


def visitor_shot(tab, name: str) -> None:
    """A screenshot of the public page, once its messages have finished sliding in."""
    tab.wait_for_timeout(300)
    tab.screenshot(path=str(ARTIFACTS / name), full_page=True, animations="disabled")


def rows(tab):
    return tab.locator("#listing-results table.maillog-addresses-listing tbody tr[data-address]")


def status_in_row(tab, address: str) -> str:
    row = tab.locator("#listing-results tbody tr[data-address]", has_text=address)
    return row.locator("[data-address-status]").get_attribute("data-address-status")


def confirm_link(message) -> str:
    return re.search(r"https?://\S+/mail/confirm/\S+/", message.body).group(0)


def test_addresses_bulk_request_and_confirm_page(page, browser, live_server, settings):  # noqa: F811
    base = live_server.url
    settings.WAGTAIL_MAILLOG = {**settings.WAGTAIL_MAILLOG, "PUBLIC_BASE_URL": base}
    members = make_members()
    make_mail(base, timezone.now())  # three hard bounces: three problem addresses
    set_status(
        [
            ("dave.wilson@example.org", AddressStatus.CONFIRMED, "Confirmed through the link"),
            ("erin.brown@example.com", AddressStatus.CONFIRMED, "Confirmed through the link"),
            ("mallory@example.net", AddressStatus.BLOCKED, f"Rejected {XSS}"),
        ]
    )
    spread_over_time(timezone.now())
    assert {a.address for a in Address.objects.filter(status="bounced")} == {
        "carol.white@exmaple.com",
        "grace.hopper@old-employer.example",
        "heidi.klum@mailbox.example",
    }
    login(page, base)

    # ---- the list, opened from the Mail menu ------------------------------------
    sidebar = page.locator("#wagtail-sidebar")
    sidebar.get_by_role("button", name="Mail").click()
    sidebar.get_by_role("link", name="Addresses").click()
    page.wait_for_url(f"{base}{ADDRESSES}")
    rows(page).first.wait_for()
    assert rows(page).count() == Address.objects.count() == 10
    assert_wagtail_styles_loaded(page)
    linked = page.evaluate("[...document.styleSheets].map(s => s.href || '')")
    assert any("addresses.css" in href for href in linked), "addresses.css is not linked"
    # coloured by meaning: confirmed green, problems red, the rest neutral
    colours = {
        status: page.locator(f'#listing-results [data-address-status="{status}"]').first.evaluate(
            "e => getComputedStyle(e).color"
        )
        for status in ("confirmed", "bounced", "unconfirmed")
    }
    assert len(set(colours.values())) == 3, colours
    heidi_row = page.locator("#listing-results tbody tr", has_text="heidi.klum@mailbox.example")
    assert heidi_row.get_by_text("Heidi Klum").is_visible()  # the member
    assert page.locator("#listing-results [title*='<script>']").count() == 1  # text, not code
    check_icons(page, "addresses list")
    shot(page, "addresses-01-list.png")
    dark_shot(page, "addresses-01-list-dark.png")
    # the default order is marked, as Wagtail marks a sorted column
    since = page.locator('#listing-results th[data-column="status_at"]')
    assert since.get_attribute("aria-sort") == "descending"
    assert "teal" in since.locator("a").get_attribute("class")

    # ---- a 390 px phone: the header still reads "Addresses" ------------------
    desktop = page.viewport_size
    page.set_viewport_size({"width": 390, "height": 844})
    # the page's name, as shown (not the screen readers' h1): whole, not cut by a box
    shown = ""
    for _attempt in range(20):  # the header lays itself out again after the resize
        page.wait_for_timeout(100)
        shown = page.evaluate(
            """() => {
            const whole = text => {
                const range = document.createRange();
                range.selectNodeContents(text);
                const box = range.getBoundingClientRect();
                if (box.width < 1 || box.left < 0 || box.right > innerWidth) return false;
                for (let up = text.parentElement; up; up = up.parentElement) {
                    if (getComputedStyle(up).overflow === 'visible') continue;
                    const clip = up.getBoundingClientRect();
                    if (box.left < clip.left - 1 || box.right > clip.right + 1) return false;
                }
                return true;
            };
            return [...document.querySelectorAll('header *')]
                .filter(e => !e.closest('.w-sr-only') && e.getClientRects().length)
                .flatMap(e => [...e.childNodes])
                .filter(n => n.nodeType === Node.TEXT_NODE && n.textContent.trim() === 'Addresses')
                .some(whole) ? 'whole' : 'cut';
        }"""
        )
        if shown == "whole":
            break
    shot(page, "addresses-01c-phone.png")
    assert shown == "whole", shown
    resend_button = page.get_by_role("link", name="Resend unanswered requests")
    assert resend_button.is_visible()  # its icon, named for screen readers
    page.set_viewport_size(desktop)

    # ---- the header button: resend to those who did not react --------------
    page.get_by_role("link", name="Resend unanswered requests").click()
    page.wait_for_url(f"{base}{ADDRESSES}resend/")
    assert page.get_by_label("Not reacted for (days)").input_value() == "7"
    check_icons(page, "resend form")
    shot(page, "addresses-01b-resend.png")
    page.get_by_role("button", name="Send again").click()
    page.wait_for_url(f"{base}{ADDRESSES}")
    page.locator(".messages", has_text="No address has left a request unanswered").wait_for()

    # ---- filter by two statuses in Wagtail's filter drawer -------------------
    page.get_by_role("button", name="Show filters").click()
    drawer = page.locator("#filters-drilldown")
    drawer.locator("button.w-drilldown__toggle", has_text="Status").click()
    menu = drawer.locator("#drilldown-id_status")
    menu.wait_for(state="visible")
    with page.expect_response(re.compile(r"/addresses/results/\?.*status=unconfirmed")):
        menu.get_by_label("Unconfirmed", exact=True).check()
    with page.expect_response(re.compile(r"status=unconfirmed.*status=requested")):
        menu.get_by_label("Confirmation requested", exact=True).check()
    page.wait_for_function(
        """() => [...document.querySelectorAll('#listing-results tbody tr[data-address]')]
            .every(r => r.querySelector('[data-address-status="unconfirmed"]'))"""
    )
    assert rows(page).count() == 4  # Alice, Bob, Frank and Ivan: nobody asked yet
    page.keyboard.press("Escape")
    menu.wait_for(state="hidden")
    shot(page, "addresses-02-filtered.png")

    # ---- select two members' addresses, bulk "Send confirmation request" -----
    chosen = ["alice.martin@example.com", "bob.jones@example.com"]
    for address in chosen:
        pk = Address.objects.get(address=address).pk
        page.locator(f'input[data-bulk-action-checkbox][data-object-id="{pk}"]').check()
    footer = page.locator("[data-bulk-action-footer]")
    footer.wait_for(state="visible")
    action = footer.locator("a, button", has_text="Send confirmation request")
    assert action.count() == 1 and action.is_visible()
    assert action.evaluate("e => e.scrollWidth <= e.clientWidth"), "the label is cut"
    shot(page, "addresses-03-selected.png")
    action.click()
    page.wait_for_url(re.compile(r"/admin/bulk/wagtail_maillog/address/send_confirmation/\?"))
    page.get_by_text("Email a confirmation link to these addresses?").wait_for()
    assert page.locator("ul.maillog-address-bulk-items li").count() == 2
    check_icons(page, "bulk confirmation")
    shot(page, "addresses-04-bulk-confirm.png")
    page.get_by_role("button", name="Yes, send").click()
    page.locator(".messages .success", has_text="2 confirmation requests were sent.").wait_for()
    assert page.url.startswith(f"{base}{ADDRESSES}")
    for address in chosen:
        assert status_in_row(page, address) == "requested"
    requests = [m for m in mail.outbox if m.subject == SUBJECT]
    assert sorted(m.to[0] for m in requests) == chosen
    alice_request = next(m for m in requests if m.to == ["alice.martin@example.com"])
    assert "Alice Martin" in alice_request.body  # the member's name

    # ---- the link, opened by the member (anonymous, another browser) ---------
    link = confirm_link(alice_request)
    assert link.startswith(f"{base}/mail/confirm/")
    visitor_context = browser.new_context(viewport={"width": 1000, "height": 760})
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(base))
    visitor = visitor_context.new_page()
    visitor.watch = PageWatch(visitor, origin)

    def only_the_live_server(route) -> None:
        if route.request.url.startswith(origin):
            route.continue_()
        else:
            visitor.watch.external.append(route.request.url)
            route.abort()

    visitor_context.route("**/*", only_the_live_server)
    try:
        visitor.goto(link)
        button = visitor.get_by_role("button", name="Confirm my address")
        button.wait_for()
        assert visitor.get_by_text("alice.martin@example.com").first.is_visible()
        assert Address.objects.get(address="alice.martin@example.com").status == "requested"
        check_icons(visitor, "confirm page")
        visitor_shot(visitor, "addresses-05-confirm-page.png")
        button.click()
        visitor.get_by_text("Thank you: alice.martin@example.com is confirmed.").wait_for()
        visitor_shot(visitor, "addresses-06-confirmed.png")
        # the same link again: already used, said plainly
        visitor.goto(link)
        visitor.get_by_text("is already confirmed").wait_for()
        # a damaged link: a clear page, no stack trace
        response = visitor.goto(link[:-6] + "xxxxx/")
        assert response.status == 404
        visitor.get_by_text("This link is not valid").wait_for()
        visitor_shot(visitor, "addresses-05b-invalid-link.png")
        visitor.watch.failed = [f for f in visitor.watch.failed if "xxxxx" not in f]
        visitor.watch.check()
    finally:
        visitor_context.close()
    assert Address.objects.get(address="alice.martin@example.com").status == "confirmed"

    # ---- back in the admin: confirmed, with its history ----------------------
    page.goto(f"{base}{ADDRESSES}?ordering=-status_at")
    rows(page).first.wait_for()
    assert status_in_row(page, "alice.martin@example.com") == "confirmed"
    page.locator("#listing-results a", has_text="alice.martin@example.com").click()
    page.wait_for_url(re.compile(rf"{re.escape(base)}{ADDRESSES}\d+/$"))
    history = page.locator("table.maillog-address-history")
    assert (
        history.locator("tr[data-change=confirmed]")
        .get_by_text("Confirmed through the link")
        .is_visible()
    )
    assert (
        history.locator("tr[data-change=requested]").get_by_text("admin", exact=True).is_visible()
    )
    assert page.get_by_text(members["alice.martin@example.com"].name).first.is_visible()
    # two mails from make_mail, and the confirmation request
    assert page.locator("table.maillog-address-mail tbody tr").count() == 3
    check_icons(page, "address detail")
    shot(page, "addresses-07-detail.png")

    # ---- a problem address: history linked to the bounced message -----------
    page.goto(f"{base}{ADDRESSES}?q=heidi")
    page.locator("#listing-results a", has_text="heidi.klum@mailbox.example").click()
    page.locator("table.maillog-address-history a", has_text="Open in the mail log").wait_for()
    assert page.locator("main a.button", has_text="Clear problem").is_visible()
    assert page.locator("main a.button", has_text="Send confirmation request").count() == 0
    check_icons(page, "problem address")
    shot(page, "addresses-07b-problem.png")
    detail_url = page.url
    page.locator("main a.button", has_text="Clear problem").click()
    page.get_by_role("button", name="Yes, clear the problem").click()
    page.wait_for_url(detail_url)
    page.locator(".messages .success", has_text="was cleared").wait_for()
    history = page.locator("table.maillog-address-history tbody tr")
    assert history.count() == 2  # the bounce stays in the history
    assert history.first.get_attribute("data-change") == "unconfirmed"
    assert history.nth(1).get_attribute("data-change") == "bounced"
    assert page.locator("main a.button", has_text="Send confirmation request").is_visible()
    shot(page, "addresses-07c-cleared.png")

    # ---- the dashboard panel -------------------------------------------------
    page.goto(f"{base}/admin/")
    panel = page.locator("#maillog-addresses-section")
    panel.wait_for()
    assert panel.locator('[data-address-count="bounced"]').inner_text().strip().endswith("2")
    assert panel.locator('[data-address-count="confirmed"]').inner_text().strip().endswith("3")
    assert panel.locator("table.maillog-address-problems tbody tr").count() == 3
    check_icons(page, "dashboard")
    shot(page, "addresses-08-dashboard.png")

    if os.environ.get("MAILLOG_UPDATE_DOC_IMAGES"):
        DOC_IMAGES.mkdir(parents=True, exist_ok=True)
        for source, target in DOC_SHOTS.items():
            shutil.copyfile(ARTIFACTS / source, DOC_IMAGES / target)

    page.watch.check()  # no dialog (the <script> reason), JS error, 404, stray icon
