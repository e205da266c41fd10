"""Reading a large table in pages by primary key, one short query a page.

Not ``OFFSET`` (each page would scan all the rows before it) and not one
cursor held open across the pages (``.iterator()``): the callers write
between pages, and on SQLite an open cursor pins a read snapshot, so their
write transaction fails at once ("database is locked", whatever the timeout)
as soon as another connection wrote meanwhile, e.g. a webhook.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.db.models import QuerySet


def pages(queryset: QuerySet[Any], chunk: int, *fields: Any) -> Iterator[list[tuple[Any, ...]]]:
    """``(pk, *fields)`` rows of ``queryset`` in primary-key order, ``chunk`` at a time."""
    rows = queryset.order_by("pk").values_list("pk", *fields)
    last: Any = None
    while True:
        page = list((rows if last is None else rows.filter(pk__gt=last))[:chunk])
        if page:
            last = page[-1][0]
            yield page
        if len(page) < chunk:
            return
