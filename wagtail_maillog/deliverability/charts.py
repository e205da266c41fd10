"""Charts drawn on the server as SVG: the deliverability page's and its dashboard panel's.

No JavaScript and nothing fetched from elsewhere. Each chart is an inline ``<svg>``
that scales to its box (a ``viewBox``, ``width: 100%``) and names its parts with
classes only: ``deliverability.css`` colours them with Wagtail's CSS variables, so
the light and the dark theme both work. A chart is an image with a title for
screen readers; the page puts the same numbers in a table under it. Every text in
a chart is escaped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from functools import lru_cache

from django.utils.formats import date_format, get_format, number_format
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import get_language, pgettext

NO_VALUE = "–"


def day_label(day: date) -> str:
    """A day on the time axis, short ("3 Nov"); translators may reorder it ("M j")."""
    return date_format(day, pgettext("deliverability chart axis, a day", "j M"))


def percent(value: float | None, *, trim: bool = False) -> str:
    """A fraction as a percentage: 0.0012 → "0.12 %", 0.061 → "6.1 %".

    Two decimals below 1 %, where the complaint limits are (0.1 %, 0.3 %), one
    above; ``trim`` drops trailing zeros (for limits and axis labels: "0.1 %").
    """
    if value is None:
        return NO_VALUE
    pct = value * 100
    places = 2 if abs(pct) < 1 else 1
    if trim:
        places = len(f"{pct:.{places}f}".rstrip("0").partition(".")[2])
    return f"{_rounded(pct, places)}\u00a0%"


@lru_cache(maxsize=32)
def _separators(language: str | None) -> tuple[str, str, object]:
    return (
        str(get_format("DECIMAL_SEPARATOR", language)),
        str(get_format("THOUSAND_SEPARATOR", language)),
        get_format("NUMBER_GROUPING", language),
    )


def _rounded(value: float, places: int) -> str:
    """``value`` to ``places`` decimals in the language's format (Django's
    ``number_format`` cuts a float's decimals instead of rounding them)."""
    decimal, _thousands, _grouping = _separators(get_language())
    return f"{value:.{places}f}".replace(".", decimal)


def count(value: int) -> str:
    """A whole number with the language's thousands separator: "12,345".

    A year's page formats some 15,000 numbers (tooltips, tables): the language's
    separators are looked up once, not per number as ``number_format`` does.
    """
    _decimal, thousands, grouping = _separators(get_language())
    if grouping != 3:  # 0 (none) or a sequence (Indian grouping): Django's way
        return number_format(value, force_grouping=True)
    return f"{value:,}".replace(",", thousands)


def compact(value: float) -> str:
    """A short number for an axis: "950", "9,500", "95k", "1.2M"."""
    if value < 10_000:
        return count(int(value))
    if value < 1_000_000:
        return f"{_rounded(value / 1000, 0)}k"
    millions = value / 1_000_000
    return f"{_rounded(millions, 1 if millions < 10 else 0)}M"


def axis_top(value: float, whole: bool, most: int = 6) -> tuple[float, float]:
    """A round top for an axis at or above ``value``, and a tick step (``most`` steps at most)."""
    if value <= 0:
        return (4.0, 1.0) if whole else (0.01, 0.0025)
    raw = value / most
    magnitude = 10 ** math.floor(math.log10(raw))
    steps = (1, 2, 5, 10) if whole and magnitude < 10 else (1, 2, 2.5, 5, 10)
    step = next(m * magnitude for m in steps if m * magnitude >= raw * (1 - 1e-9))
    if whole:
        step = max(1.0, float(round(step)))
    return step * math.ceil(value / step - 1e-9), step


@dataclass(frozen=True)
class Line:
    """One series: its key (the CSS class ``maillog-series--<key>``), label and values."""

    key: str
    label: str
    values: Sequence[float | None]


@dataclass(frozen=True)
class Rule:
    """A horizontal line across the chart: a threshold (``level``: warning, critical)."""

    level: str
    value: float
    label: str


def _num(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0")


#: A rule label's line height in the chart's units: its text is 11-13 px (the
#: stylesheet), drawn in a chart at most its own size.
RULE_LABEL_LINE = 16.0
#: The gap between a rule and the baseline of its label above it.
RULE_LABEL_ABOVE = 5.0
#: The baseline of a label below its rule: the text hangs just under the rule.
RULE_LABEL_BELOW = 14.0


def rule_label_positions(rule_y: Sequence[float]) -> list[float]:
    """The baselines of the rules' labels (rules at ``rule_y``, in any order).

    From the top: a label sits just above its rule; if that is within a line of the
    label before it, it goes just below its rule, and further down if still needed,
    so that no two labels are less than :data:`RULE_LABEL_LINE` apart."""
    found = [0.0] * len(rule_y)
    previous: float | None = None
    for i in sorted(range(len(rule_y)), key=lambda i: rule_y[i]):
        baseline = rule_y[i] - RULE_LABEL_ABOVE
        if previous is not None and baseline - previous < RULE_LABEL_LINE:
            baseline = max(rule_y[i] + RULE_LABEL_BELOW, previous + RULE_LABEL_LINE)
        found[i] = baseline
        previous = baseline
    return found


def line_chart(
    days: Sequence[date],
    lines: Sequence[Line],
    *,
    uid: str,
    title: str,
    description: str = "",
    rates: bool = False,
    rules: Sequence[Rule] = (),
    tips: Sequence[str] = (),
    width: int = 640,
    height: int = 320,
    steps: int = 6,
    days_shown: int = 7,
    css_class: str = "",
) -> SafeString:
    """Lines over days: counts (``rates=False``) or fractions drawn as percentages.

    A day without a value (a rate with nothing to divide by) leaves a gap. ``rules``
    are threshold lines, always in view. ``tips`` (one per day) are shown on hover.
    Axis labels sit on their grid lines inside the plot, so they need no margin
    whatever their size (the stylesheet enlarges them on a phone).
    """
    left, right, top, bottom = 2.0, 4.0, 28.0, 34.0
    plot_w, plot_h = width - left - right, height - top - bottom
    n = len(days)
    highest = max(
        [v for line in lines for v in line.values if v is not None] + [r.value for r in rules],
        default=0,
    )
    ceiling, step = axis_top(highest * (1.15 if rules else 1), whole=not rates, most=steps)

    def x(i: int) -> float:
        return left + plot_w / 2 if n < 2 else left + plot_w * i / (n - 1)

    def y(value: float) -> float:
        return top + plot_h * (1 - min(value, ceiling) / ceiling)

    parts: list[SafeString] = [
        format_html('<title id="{}-title">{}</title>', uid, title),
        format_html('<desc id="{}-desc">{}</desc>', uid, description),
    ]
    # grid: a line per tick, its label drawn over the series (below)
    grid, ticks_text = [], []
    ticks = int(round(ceiling / step))
    for k in range(ticks + 1):
        value = step * k
        label = percent(value, trim=True) if rates else compact(value)
        grid.append(
            format_html(
                '<line x1="{}" x2="{}" y1="{}" y2="{}" class="maillog-chart__grid{}"/>',
                _num(left),
                _num(width - right),
                _num(y(value)),
                _num(y(value)),
                " maillog-chart__grid--base" if k == 0 else "",
            )
        )
        if k == 0:  # the base line is 0 without saying so
            continue
        ticks_text.append(
            format_html(
                '<text x="{}" y="{}" class="maillog-chart__label">{}</text>',
                _num(left + 2),
                _num(y(value) - 5),
                label,
            )
        )
    parts.append(format_html('<g class="maillog-chart__ticks">{}</g>', mark_safe("".join(grid))))
    # days: ``days_shown`` labels at most, every other one hidden on a phone
    every = max(1, math.ceil(n / days_shown))
    labels = []
    for shown, i in enumerate(range(0, n, every)):
        anchor = "middle"
        if n > 1 and x(i) - left < 28:
            anchor = "start"
        elif n > 1 and width - right - x(i) < 28:
            anchor = "end"
        labels.append(
            format_html(
                '<text x="{}" y="{}" text-anchor="{}" class="maillog-chart__label'
                ' maillog-chart__day{}">{}</text>',
                _num(x(i)),
                _num(height - 8),
                anchor,
                " maillog-chart__day--minor" if shown % 2 else "",
                day_label(days[i]),
            )
        )
    parts.append(format_html('<g class="maillog-chart__days">{}</g>', mark_safe("".join(labels))))
    # thresholds: each label above its line, or below it when that would overlap a
    # label above (two limits close together on a tall axis)
    if rules:
        label_y = rule_label_positions([y(r.value) for r in rules])
        parts.append(
            format_html(
                '<g class="maillog-chart__rules">{}</g>',
                format_html_join(
                    "",
                    '<line x1="{}" x2="{}" y1="{}" y2="{}" class="maillog-chart__rule'
                    ' maillog-chart__rule--{}"/><text x="{}" y="{}" text-anchor="end"'
                    ' class="maillog-chart__label maillog-chart__rule-label'
                    ' maillog-chart__rule-label--{}">{}</text>',
                    (
                        (
                            _num(left),
                            _num(width - right),
                            _num(y(r.value)),
                            _num(y(r.value)),
                            r.level,
                            _num(width - right - 2),
                            _num(label_y[i]),
                            r.level,
                            r.label,
                        )
                        for i, r in enumerate(rules)
                    ),
                ),
            )
        )
    # the series: a path per run of days with a value, a dot per day on short periods
    drawn = []
    for line in lines:
        runs: list[list[tuple[float, float]]] = [[]]
        for i, value in enumerate(line.values):
            if value is None:
                runs.append([])
            else:
                runs[-1].append((x(i), y(value)))
        runs = [r for r in runs if r]
        path = " ".join("M" + " L".join(f"{_num(px)} {_num(py)}" for px, py in run) for run in runs)
        dots = [p for run in runs for p in run if n <= 31 or len(run) == 1]
        drawn.append(
            format_html(
                '<g class="maillog-series maillog-series--{}" data-series="{}">{}{}</g>',
                line.key,
                line.key,
                format_html('<path d="{}" class="maillog-chart__line"/>', path) if path else "",
                format_html_join(
                    "",
                    '<circle cx="{}" cy="{}" r="3" class="maillog-chart__dot"/>',
                    ((_num(px), _num(py)) for px, py in dots),
                ),
            )
        )
    parts.append(mark_safe("".join(drawn)))
    parts.append(
        format_html('<g class="maillog-chart__axis">{}</g>', mark_safe("".join(ticks_text)))
    )
    # hover: a column per day with its numbers as a tooltip
    if tips:
        half = plot_w / (2 * (n - 1)) if n > 1 else plot_w / 2
        parts.append(
            format_html(
                '<g class="maillog-chart__hits">{}</g>',
                format_html_join(
                    "",
                    '<rect x="{}" y="{}" width="{}" height="{}" class="maillog-chart__hit">'
                    "<title>{}</title></rect>",
                    (
                        (
                            _num(max(left, x(i) - half)),
                            _num(top),
                            _num(min(width - right, x(i) + half) - max(left, x(i) - half)),
                            _num(plot_h),
                            tip,
                        )
                        for i, tip in enumerate(tips)
                    ),
                ),
            )
        )
    return format_html(
        '<svg class="maillog-chart {}" viewBox="0 0 {} {}" width="100%" role="img"'
        ' aria-labelledby="{}-title {}-desc" focusable="false">{}</svg>',
        css_class,
        width,
        height,
        uid,
        uid,
        mark_safe("".join(parts)),
    )


def bar_sparkline(
    days: Sequence[date],
    totals: Sequence[int],
    bad: Sequence[int],
    *,
    uid: str,
    title: str,
    description: str = "",
) -> SafeString:
    """Small bars of mail per day, the ``bad`` part of each (bounces, complaints) marked.

    Each day is labelled with its weekday under its bar.
    """
    width, height, label_h = 210, 64, 16
    n = max(1, len(days))
    slot = width / n
    bar_w = slot * 0.64
    plot_h = height - label_h - 2
    highest = max(totals, default=0) or 1
    bars = []
    for i, day in enumerate(days):
        total, worse = totals[i], min(bad[i], totals[i])
        h = plot_h * total / highest
        worse_h = plot_h * worse / highest
        bx = i * slot + (slot - bar_w) / 2
        bars.append(
            format_html(
                '<rect x="{}" y="{}" width="{}" height="{}" rx="1.5" class="maillog-spark__bar"/>'
                "{}"
                '<text x="{}" y="{}" text-anchor="middle" class="maillog-spark__day">{}</text>',
                _num(bx),
                _num(plot_h - h),
                _num(bar_w),
                _num(max(h, 0.8 if total else 0)),
                format_html(
                    '<rect x="{}" y="{}" width="{}" height="{}" class="maillog-spark__bad"/>',
                    _num(bx),
                    _num(plot_h - max(worse_h, 1.5)),
                    _num(bar_w),
                    _num(max(worse_h, 1.5)),
                )
                if worse
                else "",
                _num(bx + bar_w / 2),
                _num(height - 3),
                date_format(day, "D"),
            )
        )
    return format_html(
        '<svg class="maillog-spark" viewBox="0 0 {} {}" width="100%" role="img"'
        ' aria-labelledby="{}-title {}-desc" focusable="false">'
        '<title id="{}-title">{}</title><desc id="{}-desc">{}</desc>'
        '<line x1="0" x2="{}" y1="{}" y2="{}" class="maillog-spark__base"/>{}</svg>',
        width,
        height,
        uid,
        uid,
        uid,
        title,
        uid,
        description,
        width,
        _num(plot_h + 0.5),
        _num(plot_h + 0.5),
        mark_safe("".join(bars)),
    )
