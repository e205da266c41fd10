"""The deliverability page, its CSV and its dashboard panel in the Wagtail admin.

The figures come from :class:`DailyCount` rows made here; every rate the page
shows is worked out again in the test from the rows, not taken from the code.
"""

from __future__ import annotations

import csv
import html
import io
import re
from datetime import date, timedelta

import pytest
from django.contrib.auth.models import AnonymousUser, Permission, User
from django.db import connection
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from wagtail import hooks

from tests.utils import client_for, denied, make_user
from wagtail_maillog.deliverability.panels import DeliverabilityDashboardPanel
from wagtail_maillog.models import DailyCount, RollupState
from wagtail_maillog.sources import source_label

pytestmark = pytest.mark.django_db

PAGE = "/admin/maillog/deliverability/"
CSV = "/admin/maillog/deliverability/csv/"
XSS = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
NBSP = "\u00a0"


def today() -> date:
    return timezone.localdate()


def row(days_ago: int = 0, **fields) -> DailyCount:
    fields.setdefault("connector", "postmark")
    fields.setdefault("esp_name", "Postmark")
    return DailyCount.objects.create(day=today() - timedelta(days=days_ago), **fields)


def pct(part: int, whole: int) -> str:
    """The page's percentage, worked out here: two decimals under 1 %, else one."""
    value = part / whole * 100
    return f"{value:.2f}{NBSP}%" if value < 1 else f"{value:.1f}{NBSP}%"


def figure(page: str, key: str) -> tuple[str, str]:
    """(value shown, level) of one figure of the totals."""
    block = re.search(
        rf'<div class="maillog-dlv-figure[^"]*" data-figure="{key}"(?: data-level="(\w+)")?>'
        r'.*?maillog-dlv-figure__value">\s*([^<]+?)\s*<',
        page,
        re.S,
    )
    assert block, key
    return block.group(2), block.group(1) or ""


def breakdown_rows(page: str, by: str) -> dict[str, str]:
    """label → the row's HTML, in a breakdown table."""
    table = re.search(rf'data-breakdown="{by}">(.*?)</table>', page, re.S).group(1)
    return {
        html.unescape(m.group(1)): m.group(0)
        for m in re.finditer(r'<tr data-value="[^"]*">\s*<th scope="row"><a [^>]+>([^<]*)</a>'
                             r".*?</tr>", table, re.S)
    }  # fmt: skip


@pytest.fixture
def people():
    return {
        "editor": make_user("editor"),
        "logviewer": make_user("logviewer", "view_message", "view_all_mail"),
        "viewer": make_user("viewer", "view_deliverability"),
        "admin": User.objects.create_superuser("admin", "admin@example.com", "pw"),
    }


@pytest.fixture
def two_esps():
    """Two days of mail through two ESPs, to Gmail and to other domains."""
    row(
        0,
        domain="gmail.com",
        source="newsletter",
        sent=800,
        delivered=780,
        bounced=12,
        complained=2,
        opened=300,
        clicked=40,
        unsubscribed=3,
        deferred=5,
    )
    row(
        1,
        domain="",
        source="newsletter",
        sent=400,
        delivered=372,
        bounced=20,
        complained=0,
        opened=120,
        clicked=10,
        unsubscribed=1,
        deferred=9,
    )
    row(
        0,
        connector="sendgrid",
        esp_name="SendGrid",
        domain="gmail.com",
        source="invoice",
        sent=300,
        delivered=290,
        bounced=6,
        complained=1,
        opened=90,
        clicked=5,
    )
    row(
        2,
        connector="sendgrid",
        esp_name="SendGrid",
        domain="outlook.com",
        source="invoice",
        sent=500,
        delivered=458,
        bounced=30,
        complained=0,
        opened=100,
        clicked=12,
    )
    # older than 30 days: not in the default period
    row(45, domain="gmail.com", source="newsletter", sent=1000, delivered=100, bounced=900)


# ---- the figures -----------------------------------------------------------------


def test_the_rates_shown_are_those_of_the_rows(two_esps, people):
    page = client_for(people["viewer"]).get(PAGE).content.decode()
    sent = 800 + 400 + 300 + 500
    delivered = 780 + 372 + 290 + 458
    bounced, complained = 12 + 20 + 6 + 30, 2 + 1
    assert figure(page, "sent") == (f"{sent:,}", "")
    assert figure(page, "delivered") == (pct(delivered, sent), "")
    assert figure(page, "bounce") == (pct(bounced, sent), "")  # 3.4 %: under SES's 5 %
    # 3 of 1,900 delivered is 0.16 %: over Gmail's and Yahoo's 0.1 %, under their 0.3 %
    assert figure(page, "complaint") == (pct(complained, delivered), "warning")
    assert figure(page, "open") == (pct(300 + 120 + 90 + 100, delivered), "")
    assert figure(page, "click") == (pct(40 + 10 + 5 + 12, delivered), "")
    assert figure(page, "unsubscribe") == (pct(4, delivered), "")
    assert figure(page, "deferred") == (pct(14, sent), "")
    # the crossing is said with its rule, once
    warning = re.search(r'<div class="help-block help-warning" data-crossed="complaint".*?</div>',
                        page, re.S).group(0)  # fmt: skip
    assert "Warning at 0.1" in warning and "Gmail and Yahoo ask bulk senders" in warning
    assert page.count("data-crossed=") == 1
    # each limit is written next to its rate
    assert "Warning at 5" in page and "Critical at 10" in page and "Critical at 0.3" in page


def test_the_breakdowns_give_each_domain_source_and_connector_its_rates(two_esps, people):
    page = client_for(people["admin"]).get(PAGE).content.decode()
    domains = breakdown_rows(page, "domain")
    assert list(domains) == ["gmail.com", "outlook.com", "Other domains"]  # most mail first
    gmail = domains["gmail.com"]
    assert pct(12 + 6, 1100) in gmail and pct(3, 780 + 290) in gmail
    assert 'data-rate="complaint" data-level="warning"' in gmail  # 0.28 %: warning
    assert pct(30, 500) in domains["outlook.com"]  # 6.0 %: over SES's review limit
    assert 'data-rate="bounce" data-level="warning"' in domains["outlook.com"]
    assert list(breakdown_rows(page, "source")) == ["Newsletter", "Invoice"]  # labels
    connectors = breakdown_rows(page, "connector")
    assert set(connectors) == {"postmark", "sendgrid"}  # the ESP's name says nothing more
    assert pct(36, 800) in connectors["sendgrid"]
    # each row narrows the page to itself
    assert "domain=gmail.com" in gmail and "domain=%2A" in domains["Other domains"]


def test_a_limit_is_not_marked_on_too_little_mail(people, settings):
    row(0, domain="gmail.com", sent=60, delivered=48, bounced=12, complained=1)
    client = client_for(people["viewer"])
    page = client.get(PAGE).content.decode()
    assert figure(page, "bounce") == (pct(12, 60), "")  # 20 %, but on 60 recipients
    assert figure(page, "complaint") == (pct(1, 48), "")
    assert page.count("data-too-few") == 2 and "data-crossed=" not in page
    assert "fewer than 100 recipients" in page
    settings.WAGTAIL_MAILLOG = {**settings.WAGTAIL_MAILLOG, "DELIVERABILITY_MIN_VOLUME": 40}
    page = client.get(PAGE).content.decode()
    assert figure(page, "bounce") == (pct(12, 60), "critical")  # 20 % ≥ SES's 10 %
    assert figure(page, "complaint") == (pct(1, 48), "critical")  # 2.1 % ≥ 0.3 %
    assert 'data-crossed="bounce" data-level="critical"' in page
    assert "Amazon SES may pause sending at 10" in page


@pytest.mark.parametrize(
    "query, sent, delivered",
    [
        ("", 2000, 1900),
        ("?domain=gmail.com", 1100, 1070),
        ("?domain=%2A", 400, 372),  # "Other domains": the rollup's ""
        ("?connector=sendgrid", 800, 748),
        ("?source=newsletter&domain=gmail.com", 800, 780),
        ("?period=7", 2000, 1900),
        ("?period=90", 3000, 2000),  # the old row too
        ("?period=range&start={d2}&end={d1}", 900, 830),
        ("?start={d2}&end={d2}", 500, 458),  # dates without a period are a range
    ],
)
def test_the_filters_narrow_the_figures(two_esps, people, query, sent, delivered):
    d1, d2 = today() - timedelta(days=1), today() - timedelta(days=2)
    response = client_for(people["viewer"]).get(PAGE + query.format(d1=d1, d2=d2))
    assert response.status_code == 200
    page = response.content.decode()
    assert figure(page, "sent")[0] == f"{sent:,}"
    assert figure(page, "delivered")[0] == pct(delivered, sent)


def test_the_filters_offer_what_the_rollup_holds(two_esps, people):
    page = client_for(people["viewer"]).get(PAGE).content.decode()
    options = dict(
        re.findall(r'<option value="([^"]*)"[^>]*>([^<]*)</option>', page.split('name="domain"')[1])
    )
    assert options == {
        "": "All domains",
        "gmail.com": "gmail.com",
        "outlook.com": "outlook.com",
        "*": "Other domains",
    }


@pytest.mark.parametrize(
    "query, error",
    [
        ("?period=range&start=2026-13-45&end=2026-01-01", "Enter a valid date."),
        ("?start=yesterday&end=today", "Enter a valid date."),
        ("?period=range&start=2026-03-01&end=2026-02-01", "This date is before the first one."),
        ("?period=range&start=2024-01-01&end=2025-12-31", "Pick at most 366 days."),
        ("?period=range&start=2026-01-01", "Give both dates of the range"),
        ("?period=365", "Select a valid choice."),
        ("?domain=nowhere.example", "Select a valid choice."),
        ("?start=99999-01-01&end=99999-01-02", "Enter a valid date."),
    ],
)
def test_bad_filters_are_a_form_error_not_a_crash(two_esps, people, query, error):
    client = client_for(people["viewer"])
    response = client.get(PAGE + query)
    assert response.status_code == 200
    page = response.content.decode()
    assert html.escape(error, quote=False) in page or error in html.unescape(page)
    assert 'class="maillog-chart' not in page and "data-figure=" not in page
    assert "Download CSV" not in page
    assert client.get(CSV + query).status_code == 400


def test_no_mail_is_said_and_so_is_a_rollup_that_never_ran(people):
    page = client_for(people["viewer"]).get(PAGE).content.decode()
    assert "data-empty" in page and "have not been counted yet" in page
    assert '<svg class="maillog-chart' not in page
    RollupState.objects.create(updated_at=timezone.now() - timedelta(minutes=3))
    page = client_for(people["viewer"]).get(PAGE).content.decode()
    updated = re.search(r"data-updated>(.*?)</p>", page, re.S).group(1)
    assert "Figures counted" in updated and "3\xa0minutes ago" in updated


# ---- the charts --------------------------------------------------------------------


def rule_labels(svg: str) -> dict[str, tuple[float, float]]:
    """``level: (y of the rule, y of its label's baseline)`` in a chart."""
    found = re.findall(
        r'<line [^>]*y1="([\d.]+)"[^>]*maillog-chart__rule--(\w+)"/>'
        r'<text [^>]*y="([\d.]+)"',
        svg,
    )
    return {level: (float(line), float(text)) for line, level, text in found}


@pytest.mark.parametrize(
    "spike, apart",
    [(0.03, False), (0.0035, True)],  # one spam spike of 3 %: the limits 4 px apart
)
def test_the_limit_labels_never_overlap(spike, apart):
    from wagtail_maillog.deliverability import charts

    days = [today() - timedelta(days=n) for n in range(6, -1, -1)]
    svg = charts.line_chart(
        days,
        [charts.Line("complained", "Spam complaint rate", [0.0005] * 6 + [spike])],
        uid="t",
        title="t",
        rates=True,
        rules=[
            charts.Rule("warning", 0.001, "Warning at 0.1 %"),
            charts.Rule("critical", 0.003, "Critical at 0.3 %"),
        ],
        width=360,
        height=210,
        steps=4,
    )
    labels = rule_labels(svg)
    (warning_line, warning), (critical_line, critical) = labels["warning"], labels["critical"]
    assert abs(warning - critical) >= charts.RULE_LABEL_LINE  # a line apart, at least
    assert critical < critical_line  # the higher limit's label above its line
    if apart:  # room enough: both above their lines
        assert warning < warning_line
    else:  # the lower one below its own line, close to it
        assert warning_line < warning <= warning_line + charts.RULE_LABEL_LINE
    assert all(0 < text < 210 - 8 - 11 for _line, text in labels.values())  # above the days


def test_rule_labels_move_down_as_far_as_needed():
    from wagtail_maillog.deliverability.charts import RULE_LABEL_LINE, rule_label_positions

    positions = rule_label_positions([100.0, 101.0, 102.0, 60.0])
    assert positions[3] == 55.0 and positions[0] == 95.0  # room: above their lines
    ordered = sorted(positions)
    assert all(b - a >= RULE_LABEL_LINE for a, b in zip(ordered, ordered[1:], strict=False))


def test_the_charts_draw_every_day_and_series_with_tables_under_them(two_esps, people):
    page = client_for(people["viewer"]).get(PAGE + "?period=7").content.decode()
    counts_svg = re.search(r'<svg class="maillog-chart maillog-chart--wide".*?</svg>', page, re.S)
    svg = counts_svg.group(0)
    assert 'viewBox="0 0 640 320"' in svg and 'width="100%"' in svg and 'role="img"' in svg
    assert '<title id="maillog-chart-counts-title">Mail per day' in svg
    series = re.findall(r'data-series="(\w+)"><path d="([^"]+)"', svg)
    assert [s for s, _d in series] == [
        "sent", "delivered", "deferred", "bounced", "complained", "unsubscribed", "opened",
        "clicked",
    ]  # fmt: skip
    assert all(d.count("L") == 6 for _s, d in series)  # 7 days, one line each
    # a tooltip per day, with that day's numbers
    tips = re.findall(r'<rect [^>]*class="maillog-chart__hit"><title>([^<]+)</title>', svg)
    assert len(tips) == 7
    assert tips[-1].endswith(
        "Sent 1,100, Delivered 1,070, Deferred 5, Bounced 18, Complained 3, Unsubscribed 3,"
        " Opened 390, Clicked 45"
    )
    # the highest point is today's 1,100 sent: the top of the plot is a round 1,200
    assert ">1,200</text>" in svg
    # rates: one small chart each, the limits drawn as lines
    complaint = re.search(r'data-rate-chart="complaint">.*?</figure>', page, re.S).group(0)
    assert complaint.count("maillog-chart__rule--warning") == 1
    assert complaint.count("maillog-chart__rule--critical") == 1
    assert "Critical at 0.3" in complaint
    # a day without mail has no rate: a gap in the line, not a fall to 0 %
    bounce = re.search(r'data-rate-chart="bounce">.*?</figure>', page, re.S).group(0)
    path = re.search(r'data-series="bounced"><path d="([^"]+)"', bounce).group(1)
    assert path.count("M") == 1 and path.count("L") == 2  # the last three days only
    # the same numbers as tables, for screen readers
    counts_table = re.search(r'data-table="counts">.*?</table>', page, re.S).group(0)
    assert "<caption>Recipients per day," in counts_table
    assert counts_table.count('<th scope="col"') == 9 and counts_table.count('scope="row"') == 7
    today_row = re.search(rf'<tr data-day="{today():%Y-%m-%d}">(.*?)</tr>', counts_table).group(1)
    assert re.findall(r'<td class="maillog-num">([^<]*)</td>', today_row) == [
        "1,100", "1,070", "5", "18", "3", "3", "390", "45",
    ]  # fmt: skip
    rates_table = re.search(r'data-table="rates">.*?</table>', page, re.S).group(0)
    day2 = re.search(rf'<tr data-day="{today() - timedelta(days=2):%Y-%m-%d}">(.*?)</tr>',
                     rates_table).group(1)  # fmt: skip
    cells = re.findall(r'<td class="maillog-num">([^<]*)</td>', day2)
    assert cells[:3] == [pct(458, 500), pct(30, 500), pct(0, 458)]
    empty_day = re.search(rf'<tr data-day="{today() - timedelta(days=4):%Y-%m-%d}">(.*?)</tr>',
                          rates_table).group(1)  # fmt: skip
    assert set(re.findall(r'<td class="maillog-num">([^<]*)</td>', empty_day)) == {"–"}


# ---- hostile values ------------------------------------------------------------------


def test_hostile_sources_and_domains_are_text_in_the_page_and_the_svg(people):
    row(0, source=XSS, domain=XSS, connector=XSS, esp_name=XSS, sent=200, delivered=190)
    client = client_for(people["viewer"])
    page = client.get(PAGE).content.decode()
    assert "<script>alert" not in page
    assert ESCAPED in page
    # chosen as filters: in the heading, the chart's title and the tables' captions
    response = client.get(PAGE, {"source": XSS, "domain": XSS, "connector": XSS})
    assert response.status_code == 200
    page = response.content.decode()
    assert "<script>alert" not in page
    svg = re.search(r'<svg class="maillog-chart maillog-chart--wide".*?</svg>', page, re.S)
    assert f"Sent from: {ESCAPED}" in svg.group(0)
    assert figure(page, "sent")[0] == "200"


def test_the_csv_is_the_daily_series_and_runs_no_formula(people):
    hostile = '=HYPERLINK("http://evil.example","x")'
    row(0, source=hostile, domain="@evil.example", connector="-2+3", esp_name="+1",
        sent=120, delivered=110, bounced=6, complained=1, opened=50)  # fmt: skip
    row(2, source=hostile, domain="@evil.example", connector="-2+3", esp_name="+1",
        sent=80, delivered=80)  # fmt: skip
    row(1, source="other", sent=999)  # not in the slice
    client = client_for(people["viewer"])
    page = client.get(PAGE, {"source": hostile, "period": "7"}).content.decode()
    link = re.search(r'href="([^"]+)" data-csv', page).group(1)
    assert link.startswith(CSV) and "period=7" in link
    response = client.get(html.unescape(link))
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="deliverability-')
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0][:12] == [
        "day", "source", "connector", "domain", "sent", "delivered", "deferred", "bounced",
        "complained", "unsubscribed", "opened", "clicked",
    ]  # fmt: skip
    assert "bounce_rate" in rows[0] and "complaint_rate" in rows[0]
    assert len(rows) == 1 + 7  # one row per day, days without mail too
    by_day = {r[0]: dict(zip(rows[0], r, strict=True)) for r in rows[1:]}
    now = by_day[today().isoformat()]
    assert now["source"] == "'" + source_label(hostile)  # the code's label, made inert
    assert now["sent"] == "120" and now["bounced"] == "6"
    assert float(now["bounce_rate"]) == pytest.approx(6 / 120, abs=1e-6)
    assert float(now["complaint_rate"]) == pytest.approx(1 / 110, abs=1e-6)
    assert by_day[(today() - timedelta(days=1)).isoformat()]["sent"] == "0"
    assert by_day[(today() - timedelta(days=1)).isoformat()]["bounce_rate"] == ""
    # every filter column that looks like a formula is inert
    response = client.get(CSV, {"connector": "-2+3", "domain": "@evil.example"})
    cells = list(csv.reader(io.StringIO(response.content.decode())))[-1]
    assert cells[2] == "'-2+3 (+1)" and cells[3] == "'@evil.example"
    assert not any(c.startswith(("=", "+", "-", "@")) for r in rows for c in r)


# ---- who may see it -----------------------------------------------------------------


def test_only_users_with_the_permission_see_the_page_csv_menu_and_panel(two_esps, people):
    for name in ("editor", "logviewer"):
        client = client_for(people[name])
        assert denied(client.get(PAGE)), name
        assert denied(client.get(CSV)), name
        home = client.get("/admin/").content.decode()
        assert PAGE not in home and 'id="maillog-deliverability-section"' not in home, name
    for name in ("viewer", "admin"):
        client = client_for(people[name])
        assert client.get(PAGE).status_code == 200
        assert client.get(CSV).status_code == 200
        home = client.get("/admin/").content.decode()
        assert PAGE in home and 'id="maillog-deliverability-section"' in home, name
    assert client_for(people["viewer"]).get(PAGE).context["view"].header_icon == "crosshairs"
    panels: list = []
    for hook in hooks.get_hooks("construct_homepage_panels"):
        request = RequestFactory().get("/admin/")
        request.user = AnonymousUser()
        hook(request, panels)
    assert not any(isinstance(p, DeliverabilityDashboardPanel) for p in panels)


def test_the_permission_is_offered_in_wagtail_s_group_settings(people):
    offered = set()
    for hook in hooks.get_hooks("register_permissions"):
        offered |= set(hook())
    assert Permission.objects.get(codename="view_deliverability") in offered
    page = client_for(people["admin"]).get("/admin/groups/new/").content.decode()
    assert "Can view deliverability" in page


# ---- the dashboard panel ---------------------------------------------------------------


def test_the_dashboard_panel_gives_the_week_s_rates_in_one_query(people):
    for days_ago in range(7):
        row(days_ago, domain="gmail.com", sent=100, delivered=96, bounced=3, complained=1)
    row(8, domain="gmail.com", sent=100, delivered=0, bounced=100)  # last week: not counted
    panel = DeliverabilityDashboardPanel()
    with CaptureQueriesContext(connection) as queries:
        html_ = panel.render_html({})
    assert len(queries) == 1, [q["sql"] for q in queries]
    shown = re.findall(
        r'data-figure="(\w+)"[^>]*>\s*<dt>[^<]*</dt>\s*'
        r'<dd class="maillog-dlv-figure__value">([^<]+?)\s*<',
        html_,
    )
    figures_ = dict(shown)
    assert figures_ == {
        "delivered": pct(672, 700),
        "bounce": pct(21, 700),
        "complaint": pct(7, 672),  # 1.04 %: over 0.3 %
    }
    assert 'data-crossed="complaint" data-level="critical"' in html_
    assert "Gmail and Yahoo: never reach 0.3" in html_
    assert 'class="help-block help-critical"' in html_
    assert 'href="/admin/maillog/deliverability/"' in html_
    spark = re.search(r'<svg class="maillog-spark".*?</svg>', html_, re.S).group(0)
    assert spark.count('class="maillog-spark__bar"') == 7
    assert spark.count('class="maillog-spark__bad"') == 7
    assert 'role="img"' in spark and "<title id=" in spark


def test_the_dashboard_panel_without_mail_and_without_a_crossing(people):
    html_ = DeliverabilityDashboardPanel().render_html({})
    assert "data-empty" in html_ and "data-crossed" not in html_
    row(0, sent=1000, delivered=990, bounced=10)
    html_ = DeliverabilityDashboardPanel().render_html({})
    assert "data-empty" not in html_ and "data-crossed" not in html_ and "help-block" not in html_
