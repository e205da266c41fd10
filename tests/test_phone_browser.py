"""The app's pages on a 390 px phone: nothing is cut off out of reach.

Wagtail's main area hides what runs off its right edge (``overflow-x: hidden``),
so a table wider than the screen must sit in a box that scrolls sideways
(``.maillog-scroll``), and a long value of a definition list must wrap. For
each page, every visible piece of text in the content must either end inside
the screen or sit in a box that scrolls; every such box must really scroll to
its end. The outbox quick view, the labelled body parts of a message, the
underlined links in running text and the block error messages are checked on
the way. Same requirements as ``tests/test_browser.py`` (whose fixtures it uses).
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.core.mail import EmailMultiAlternatives
from django.utils import timezone

from tests.browser_helpers import make_mail
from tests.test_axe_browser import make_outbox
from tests.test_browser import (  # noqa: F401 (browser, offline_admin, page are fixtures)
    PASSWORD,
    browser,
    offline_admin,
    page,
    shot,
)
from wagtail_maillog.models import Address, AddressStatus, Message, OutboxItem

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}
LONG_ADDRESS = "a.very.long.address.of.a.member.who.likes.long.names@subdomain.example.org"
ERROR = 'AnymailAPIError: Postmark API response 503 (Service Unavailable):\n{\n  "error": 503\n}'

#: Text in the page content that ends right of the screen and no box scrolls to it.
CUT_OFF = """() => {
    const width = document.documentElement.clientWidth;
    const found = [];
    for (const el of document.querySelectorAll('main *')) {
        // Wagtail's own header (breadcrumbs), menus, minimap and hidden parts are not ours
        if (el.closest('header, [data-side-panel], .w-dropdown__content, .w-minimap, '
                       + 'template, [hidden], .w-sr-only')) continue;
        const box = el.getBoundingClientRect();
        if (box.width < 2 || box.height < 2 || box.right <= width + 1) continue;
        const text = [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim())
            || ['INPUT', 'SELECT', 'BUTTON', 'TEXTAREA', 'IMG'].includes(el.tagName);
        if (!text || getComputedStyle(el).visibility === 'hidden') continue;
        let up = el.parentElement, scrolls = false;
        for (; up; up = up.parentElement) {
            const overflow = getComputedStyle(up).overflowX;
            if (overflow === 'auto' || overflow === 'scroll') { scrolls = true; break; }
            if (overflow === 'hidden' || overflow === 'clip') break;
        }
        if (!scrolls) {
            found.push(`<${el.tagName.toLowerCase()} class="${el.className}"> `
                       + `"${(el.innerText || el.value || '').trim().slice(0, 40)}" `
                       + `ends at ${Math.round(box.right)} px`);
        }
    }
    return found;
}"""

#: Each sideways-scrolling box of ours, scrolled to its end: does its last column show?
SCROLL_TO_END = """() => [...document.querySelectorAll('.maillog-scroll')]
    .filter(box => box.scrollWidth > box.clientWidth)
    .filter(box => {
        box.scrollLeft = box.scrollWidth;
        const edge = box.getBoundingClientRect().right;
        const cells = [...box.querySelectorAll('tr > :last-child')];
        const shown = cells.every(c => c.getBoundingClientRect().right <= edge + 1);
        box.scrollLeft = 0;
        return !shown;
    })
    .map(box => box.firstElementChild.className)"""


def line_starts(items) -> int:
    """In how many places the rows of these wrapping items start (1: all aligned)."""
    starts = {}
    for box in (item.bounding_box() for item in items.all()):
        starts.setdefault(round(box["y"]), round(box["x"]))
    assert len(starts) > 1, "the items do not wrap: nothing to compare"
    return len(set(starts.values()))


def test_no_content_is_cut_off_on_a_phone(page, live_server, settings):  # noqa: F811
    base = live_server.url
    settings.WAGTAIL_MAILLOG = {**getattr(settings, "WAGTAIL_MAILLOG", {}), "STORE_BODY": True}
    data = make_mail(base, timezone.now())
    both = EmailMultiAlternatives(
        "Both parts", "Hello in text", "office@acme.example", ["b@example.com"]
    )
    both.attach_alternative("<p>Hello in <b>HTML</b></p>", "text/html")
    both.send()
    both = Message.objects.get(pk=both._maillog_pk)
    User.objects.create_superuser("admin", "admin@example.com", PASSWORD)
    item = make_outbox(settings)  # a failed mail, and a disabled connector with an Enable button
    OutboxItem.objects.filter(pk=item.pk).update(last_error=ERROR)
    address = Address.objects.create(address=LONG_ADDRESS, status=AddressStatus.REQUESTED)

    page.set_viewport_size(PHONE)
    page.goto(f"{base}/admin/login/")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", PASSWORD)
    page.click("form button[type=submit]")
    page.wait_for_url(f"{base}/admin/")

    bounced = data.messages["inv43"]
    pages = {
        "mail-log": "/admin/maillog/",
        "mail-log-detail": f"/admin/maillog/{bounced.pk}/",
        "mail-log-detail-outbox": f"/admin/maillog/{item.message_id}/",
        "outbox": "/admin/maillog/outbox/?view=all",
        "outbox-detail": f"/admin/maillog/outbox/{item.pk}/",
        "connectors": "/admin/maillog/outbox/connectors/",
        "webhooks": "/admin/maillog/webhooks/",
        "addresses": "/admin/maillog/addresses/",
        "address-detail": f"/admin/maillog/addresses/{address.pk}/",
        "addresses-resend": "/admin/maillog/addresses/resend/",
        "deliverability": "/admin/maillog/deliverability/",
    }
    cut, unreachable = [], []
    for name, url in pages.items():
        page.goto(f"{base}{url}")
        page.wait_for_load_state("networkidle")
        shot(page, f"phone-{name}.png")
        cut += [f"{name}: {what}" for what in page.evaluate(CUT_OFF)[:3]]  # a few a page
        unreachable += [f"{name}: {what}" for what in page.evaluate(SCROLL_TO_END)]
    assert cut == [], "cut off on a 390 px phone:\n" + "\n".join(cut)
    assert unreachable == [], "a scroll box does not reach its end:\n" + "\n".join(unreachable)

    # ---- the pages' details ------------------------------------------------------
    # a multi-line error is a block: its first line starts where the others do
    page.goto(f"{base}/admin/maillog/outbox/{item.pk}/")
    starts = page.locator("dd code.maillog-outbox-error-text").evaluate(
        """code => {
            const range = document.createRange();
            range.selectNodeContents(code);
            const lines = {};  // each line's start: its leftmost text box
            for (const r of range.getClientRects()) {
                const top = Math.round(r.top);
                lines[top] = Math.min(lines[top] ?? Infinity, Math.round(r.left));
            }
            return [...new Set(Object.values(lines))];
        }"""
    )
    assert len(starts) == 1, f"the lines of the error start at {starts} px"
    # a link in running text is underlined, not told apart by its colour only
    page.goto(f"{base}/admin/maillog/addresses/resend/")
    link = page.locator(".maillog-address-intro a")
    assert "underline" in link.evaluate("a => getComputedStyle(a).textDecorationLine")
    # the two parts of the body are labelled
    page.goto(f"{base}/admin/maillog/{both.pk}/")
    assert page.locator("#body ~ h3").all_inner_texts() == ["HTML", "Plain text"]
    page.goto(f"{base}/admin/maillog/{bounced.pk}/")  # text only
    assert page.locator("#body ~ h3").all_inner_texts() == ["Plain text"]

    # ---- the outbox: its view tabs wrap without an indent, and its quick view ------------
    page.goto(f"{base}/admin/maillog/outbox/?view=all")
    assert line_starts(page.locator(".maillog-outbox-views a")) == 1, "a tab row is indented"
    row = page.locator(f'tr[data-outbox-item="{item.pk}"]')
    row.locator("[aria-label^='More options']").click()
    row.locator('a[data-action-name="quick-view"]').click()
    quick = page.locator(".modal [data-maillog-quick-view-body]")
    quick.wait_for(state="visible")
    edge = quick.bounding_box()["x"] + quick.bounding_box()["width"]
    for value in quick.locator("dd").all():
        box = value.bounding_box()
        assert box["x"] + box["width"] <= edge + 1, value.inner_text()
        assert value.evaluate("e => e.scrollWidth <= e.clientWidth + 1"), value.inner_text()
    assert line_starts(quick.locator(".maillog-actions .button")) == 1, "a button is indented"
    shot(page, "phone-outbox-quick-view.png")

    page.watch.check()
