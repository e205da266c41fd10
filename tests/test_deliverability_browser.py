"""The deliverability page and its dashboard panel in a real browser (headless Chromium).

Opened from the Mail menu as a superuser, in Wagtail's light and dark themes and at
a phone's width; filtered through the form. Screenshots go to
``test-artifacts/browser/``; with ``MAILLOG_UPDATE_DOC_IMAGES=1`` they are also
copied to ``docs/images/``. Same requirements as ``tests/test_browser.py``, whose
fixtures it uses.
"""

from __future__ import annotations

import math
import os
import re
import shutil
from datetime import timedelta

import pytest
from django.utils import timezone

from tests.browser_helpers import XSS
from tests.test_browser import (  # noqa: F401 (browser, offline_admin, page are fixtures)
    ARTIFACTS,
    DOC_IMAGES,
    assert_wagtail_styles_loaded,
    browser,
    check_icons,
    login,
    offline_admin,
    page,
    shot,
)
from wagtail_maillog.models import DailyCount, RollupState

pytestmark = pytest.mark.browser

PAGE = "/admin/maillog/deliverability/"
DOC_SHOTS = {  # screenshot in ARTIFACTS -> name in docs/images
    "deliverability-light.png": "deliverability-light.png",
    "deliverability-dark.png": "deliverability-dark.png",
    "deliverability-dashboard.png": "deliverability-dashboard.png",
}
#: (connector, ESP, domain, source, share of the day's mail, bounce, complaint)
SLICES = [
    ("postmark", "Postmark", "gmail.com", "newsletter", 0.34, 0.012, 0.003),
    ("postmark", "Postmark", "outlook.com", "newsletter", 0.16, 0.021, 0.0008),
    ("postmark", "Postmark", "", "newsletter", 0.14, 0.055, 0.0005),
    ("postmark", "Postmark", "gmail.com", "invoice", 0.10, 0.008, 0.0),
    ("sendgrid", "SendGrid", "yahoo.com", "password_reset", 0.12, 0.015, 0.0),
    ("sendgrid", "SendGrid", "gmail.com", XSS, 0.04, 0.01, 0.0),
    ("sendgrid", "SendGrid", "", "form", 0.10, 0.03, 0.0),
]


def make_counts(days: int = 30) -> None:
    """A month of mail: weekly newsletters on top of daily transactional mail."""
    today = timezone.localdate()
    rows = []
    for n in range(days):
        day = today - timedelta(days=n)
        volume = 240 + 60 * math.sin(n / 3) + (1400 if day.weekday() == 1 else 0)
        for connector, esp, domain, source, share, bounce, complaint in SLICES:
            sent = round(volume * share)
            bounced = round(sent * bounce * (3 if n == 9 and domain == "" else 1))
            delivered = sent - bounced - round(sent * 0.01)
            rows.append(
                DailyCount(
                    day=day,
                    connector=connector,
                    esp_name=esp,
                    domain=domain,
                    source=source,
                    sent=sent,
                    delivered=delivered,
                    deferred=round(sent * 0.02),
                    bounced=bounced,
                    complained=round(delivered * complaint + (0.4 if n % 4 == 0 else 0)),
                    unsubscribed=round(delivered * 0.004),
                    opened=round(delivered * (0.42 if source == "newsletter" else 0.6)),
                    clicked=round(delivered * 0.06),
                )
            )
    DailyCount.objects.bulk_create(rows)
    RollupState.objects.create(updated_at=timezone.now() - timedelta(minutes=4))


CONTRAST = """(colour, against) => {
    const rgb = c => c.startsWith('color(srgb')
        ? c.slice(11, -1).split(' ').slice(0, 3).map(v => parseFloat(v) * 255)
        : c.match(/[\\d.]+/g).slice(0, 3).map(Number);
    const lum = c => {
        const [r, g, b] = rgb(c).map(v => v / 255).map(
            v => v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4);
        return 0.2126 * r + 0.7152 * g + 0.0722 * b;
    };
    const [a, b] = [lum(colour), lum(against)].sort((x, y) => y - x);
    return (a + 0.05) / (b + 0.05);
}"""


def check_chart_colours(tab, theme: str) -> dict[str, str]:
    """The chart's lines differ from each other and stand out from the page (WCAG's 3:1
    for graphics), in the theme shown; its words are readable (4.5:1)."""
    found = tab.evaluate(
        """(contrast) => {
        contrast = eval(contrast);
        const svg = document.querySelector('svg.maillog-chart--wide');
        // the page's colour as the theme sets it (the body itself is transparent)
        const probe = document.createElement('div');
        probe.style.background = 'var(--w-color-surface-page)';
        svg.parentElement.append(probe);
        const page = getComputedStyle(probe).backgroundColor;
        probe.remove();
        const keys = ['sent', 'delivered', 'deferred', 'bounced', 'complained',
                      'unsubscribed', 'opened', 'clicked'];
        const lines = Object.fromEntries(keys.map(k => [k, getComputedStyle(
            svg.querySelector(`.maillog-series--${k} .maillog-chart__line`)).stroke]));
        const rules = [...document.querySelectorAll('.maillog-chart__rule')]
            .map(r => getComputedStyle(r).stroke);
        return {
            page,
            lines,
            low: Object.entries(lines).concat(rules.map(r => ['rule', r]))
                .map(([k, c]) => [k, c, contrast(c, page)]).filter(([k, c, r]) => r < 3),
            text: contrast(getComputedStyle(svg.querySelector('text')).fill, page),
        };
    }""",
        CONTRAST,
    )
    assert len(set(found["lines"].values())) == 8, (theme, found["lines"])
    assert found["low"] == [], (theme, found["page"], found["low"])
    assert found["text"] >= 4.5, (theme, found)
    return found["lines"]


def test_the_deliverability_page_in_both_themes_and_on_a_phone(page, live_server):  # noqa: F811
    base = live_server.url
    make_counts()
    login(page, base)

    # ---- the dashboard panel -------------------------------------------------------
    panel = page.locator("#maillog-deliverability-section")
    panel.wait_for()
    assert panel.locator("svg.maillog-spark").is_visible()
    assert panel.locator('[data-crossed="complaint"]').is_visible()  # 0.16 % on Gmail
    check_icons(page, "dashboard")
    panel.scroll_into_view_if_needed()
    panel.screenshot(path=str(ARTIFACTS / "deliverability-dashboard.png"), animations="disabled")

    # ---- the page, from the Mail menu -----------------------------------------------
    sidebar = page.locator("#wagtail-sidebar")
    sidebar.get_by_role("button", name="Mail").click()
    sidebar.get_by_role("link", name="Deliverability").click()
    page.wait_for_url(f"{base}{PAGE}")
    assert_wagtail_styles_loaded(page)
    linked = page.evaluate("[...document.styleSheets].map(s => s.href || '')")
    assert any("deliverability.css" in href for href in linked)
    assert page.locator("h1", has_text="Deliverability").count() == 1
    assert page.locator("svg.maillog-chart").count() == 1 + 7  # counts, then one per rate
    assert page.get_by_role("img", name=re.compile("^Mail per day")).is_visible()
    assert page.locator('[data-figure="complaint"][data-level="warning"]').is_visible()
    assert page.get_by_text("Figures counted").is_visible()
    # the XSS source is a label in the table, not a script (PageWatch fails on a dialog)
    assert page.locator('[data-breakdown="source"] th a', has_text=XSS).count() == 1
    # a table under each chart, opened on demand
    counts = page.locator('[data-table="counts"]')
    assert not counts.is_visible()
    page.get_by_text("The numbers, day by day").click()
    counts.wait_for(state="visible")
    assert counts.locator("tbody tr").count() == 30
    check_icons(page, "page")
    light = check_chart_colours(page, "light")
    page.get_by_text("The numbers, day by day").click()  # closed again for the picture
    page.mouse.move(0, 0)
    shot(page, "deliverability-light.png")

    # ---- dark ------------------------------------------------------------------------
    page.emulate_media(color_scheme="dark")
    assert page.evaluate("matchMedia('(prefers-color-scheme: dark)').matches")
    dark = check_chart_colours(page, "dark")
    assert light["sent"] != dark["sent"]  # the theme's own colours, not the light ones
    shot(page, "deliverability-dark.png")
    page.goto(f"{base}/admin/")
    page.locator("#maillog-deliverability-section").screenshot(
        path=str(ARTIFACTS / "deliverability-dashboard-dark.png"), animations="disabled"
    )
    page.goto(f"{base}{PAGE}")
    page.emulate_media(color_scheme="light")

    # ---- filter to one domain ------------------------------------------------------
    page.get_by_label("Recipient domain", exact=True).select_option("gmail.com")
    page.get_by_role("button", name="Show").click()
    page.wait_for_url(re.compile(r"domain=gmail.com"))
    assert page.locator("h2", has_text="Recipient domain: gmail.com").is_visible()
    rows = page.locator('[data-breakdown="domain"] tbody tr')
    assert rows.count() == 1
    csv_link = page.locator("a[data-csv]").get_attribute("href")
    assert "domain=gmail.com" in csv_link
    download = page.request.get(f"{base}{csv_link}")
    assert download.ok and download.headers["content-type"].startswith("text/csv")
    assert download.text().count("\n") == 31  # a header and 30 days

    # ---- a bad range: said in the form -------------------------------------------------
    page.get_by_label("Period", exact=True).select_option("range")
    page.get_by_label("From", exact=True).fill("2026-03-01")
    page.get_by_label("To", exact=True).fill("2026-02-01")
    page.get_by_role("button", name="Show").click()
    page.get_by_text("This date is before the first one.").wait_for()
    assert page.locator("svg.maillog-chart").count() == 0

    # ---- a phone ----------------------------------------------------------------------
    page.goto(f"{base}{PAGE}")
    desktop = page.viewport_size
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_timeout(200)
    layout = page.evaluate(
        """() => {
        const svg = document.querySelector('svg.maillog-chart--wide');
        const labels = [...svg.querySelectorAll('text')].filter(t => t.getClientRects().length);
        // past the screen's edge: what is not inside a table's own scrolling box
        const wide = [...document.querySelectorAll('main *')]
            .filter(e => e.getClientRects().length && !e.closest('.maillog-dlv-scroll'))
            .filter(e => e.getBoundingClientRect().right > innerWidth + 1)
            .map(e => `<${e.tagName.toLowerCase()} class="${e.className}">`);
        return {
            chart: svg.getBoundingClientRect().right,
            width: innerWidth,
            page: document.documentElement.scrollWidth,
            smallest: Math.min(...labels.map(t => t.getBoundingClientRect().height)),
            wide: wide.slice(0, 5),
        };
    }"""
    )
    assert layout["chart"] <= layout["width"] and layout["page"] <= layout["width"], layout
    assert layout["wide"] == [], layout  # nothing wider than the screen but the tables
    assert layout["smallest"] >= 9, layout  # the chart's words are still readable
    shot(page, "deliverability-phone.png")
    page.emulate_media(color_scheme="dark")
    shot(page, "deliverability-phone-dark.png")
    page.emulate_media(color_scheme="light")
    page.set_viewport_size(desktop)

    if os.environ.get("MAILLOG_UPDATE_DOC_IMAGES"):
        DOC_IMAGES.mkdir(parents=True, exist_ok=True)
        for source, target in DOC_SHOTS.items():
            shutil.copyfile(ARTIFACTS / source, DOC_IMAGES / target)

    page.watch.check()  # no dialog (the <script> source), JS error, 404, request elsewhere
