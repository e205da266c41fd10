"""The benchmark table: one row per figure, one value column per database."""

from __future__ import annotations

import os
import platform
from importlib.metadata import PackageNotFoundError, version
from typing import Any

DATABASE_LABELS = {"sqlite": "SQLite", "postgres": "PostgreSQL", "mysql": "MariaDB"}


def machine() -> dict[str, Any]:
    def v(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "–"

    return {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "django": v("django"),
        "wagtail": v("wagtail"),
        "django-q2": v("django-q2"),
        "platform": platform.platform(),
    }


def show(value: float | None) -> str:
    if value is None:
        return "–"
    if float(value).is_integer() or abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:,.1f}" if abs(value) >= 10 else f"{value:,.2f}"


def _verdict(figure: dict[str, Any] | None) -> str:
    if figure is None or figure["met"] is None:
        return ""
    return "met" if figure["met"] else "MISSED"


def _notes(by_db: dict[str, dict[str, Any]], databases: list[str]) -> str:
    notes = {d: by_db[d]["note"] for d in databases if d in by_db and by_db[d]["note"]}
    if len(set(notes.values())) <= 1:
        return next(iter(notes.values()), "")
    return "; ".join(f"{DATABASE_LABELS[d]}: {note}" for d, note in notes.items())


def table(figures: list[dict[str, Any]], databases: list[str]) -> str:
    """A Markdown table (pasteable into docs/performance.md)."""
    rows: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for f in figures:
        rows.setdefault((f["measure"], f["name"]), {})[f["db"]] = f
    header = ["measure", "figure", *(DATABASE_LABELS[d] for d in databases)]
    header += ["unit", "target", "met", "notes"]
    lines = [header]
    for (measure, name), by_db in rows.items():
        first = next(iter(by_db.values()))
        cells = [show(by_db[d]["value"]) if d in by_db else "" for d in databases]
        verdicts = [_verdict(by_db.get(d)) for d in databases]
        met = " / ".join(verdicts) if any(verdicts) else ""
        lines.append(
            [measure, name, *cells, first["unit"], first["target"], met, _notes(by_db, databases)]
        )
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    numeric = set(range(2, 2 + len(databases)))

    def fmt(line: list[str]) -> str:
        cells = [
            str(c).rjust(widths[i]) if i in numeric else str(c).ljust(widths[i])
            for i, c in enumerate(line)
        ]
        return "| " + " | ".join(cells) + " |"

    rule = "|".join(
        "-" * (w + 1) + ":" if i in numeric else "-" * (w + 2) for i, w in enumerate(widths)
    )
    return "\n".join([fmt(lines[0]), f"|{rule}|", *(fmt(line) for line in lines[1:])])


def heading(info: dict[str, Any], quick: bool, described: dict[str, str]) -> str:
    sizes = "quick sizes (--quick)" if quick else "full sizes"
    return (
        f"wagtail-maillog benchmarks, {sizes}: {info['cores']} cores, Python {info['python']}, "
        f"Django {info['django']}, Wagtail {info['wagtail']}, django-q2 {info['django-q2']}\n"
        f"databases: {', '.join(described.values()) or '–'}"
    )
