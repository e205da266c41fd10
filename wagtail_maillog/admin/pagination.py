"""Paginators the admin listings share."""

from __future__ import annotations

from typing import Any

from django.core.paginator import Page
from django.db.models import IntegerField, QuerySet, Subquery
from django.utils.formats import number_format
from django.utils.functional import cached_property
from django.utils.translation import gettext as _
from wagtail.admin.paginator import WagtailPaginator

#: The mail log counts matching rows up to this many; beyond it says "10,000+".
COUNT_CAP = 10_000
#: The page's rows carry the counts under these names (``<prefix>`` and ``<prefix>_<name>``).
COUNT_PREFIX = "maillog_counted"


class CountOf(Subquery):
    """``(SELECT COUNT(*) FROM (<queryset>) ...)``: a count as a column of another
    query, counting at most ``limit`` rows when given. Not correlated with the outer
    query, so the database counts once per statement, not once per row."""

    template = "(SELECT COUNT(*) FROM (%(subquery)s) AS maillog_rows)"

    def __init__(self, queryset: QuerySet[Any], limit: int | None = None) -> None:
        # Without ORDER BY: which rows are counted does not matter, and the database
        # may then read them in any order (not, say, along an index in the listing's order).
        rows = queryset.order_by().values("pk")
        super().__init__(rows if limit is None else rows[:limit], output_field=IntegerField())


class CappedPaginator(WagtailPaginator):
    """Counts at most ``COUNT_CAP`` rows (further when a later page is asked for).

    ``COUNT(*)`` of a million-row log reads every row (every index entry) on
    each page view; counting through ``LIMIT`` stops once the cap is passed.
    Past the cap the pages run on: each later page counts a little further.

    The count is read with the rows of the page, in the same statement (each row
    carries it), and so are the counts of :attr:`also_count` (querysets named by the
    view, e.g. the menu's outbox badge): a page is one statement, not three. Only a
    page past the last (no rows to carry the count) counts on its own.
    """

    cap = COUNT_CAP
    wanted_page = 1

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Further counts to read with the page's rows, by name; their results land in
        #: :attr:`counted` (nothing there when the page had no rows).
        self.also_count: dict[str, QuerySet[Any]] = {}
        self.counted: dict[str, int] = {}
        self._read: tuple[int, list[Any]] | None = None

    def get_page(self, number: Any) -> Any:
        try:
            self.wanted_page = max(1, int(number))
        except (TypeError, ValueError):
            self.wanted_page = 1
        self._read_page(self.wanted_page)
        return super().get_page(number)

    def _read_page(self, number: int) -> None:
        """The rows of page ``number`` and the counts, in one statement."""
        if not isinstance(self.object_list, QuerySet):
            return
        counts = {COUNT_PREFIX: CountOf(self.object_list, self.limit + 1)}
        counts.update(
            {f"{COUNT_PREFIX}_{name}": CountOf(qs) for name, qs in self.also_count.items()}
        )
        bottom = (number - 1) * self.per_page
        rows = list(
            self.object_list.annotate(**counts)[bottom : bottom + self.per_page + self.orphans]
        )
        if rows:
            self.__dict__["count"] = getattr(rows[0], COUNT_PREFIX)
            self.counted = {
                name: getattr(rows[0], f"{COUNT_PREFIX}_{name}") for name in self.also_count
            }
        elif number == 1:
            self.__dict__["count"] = 0  # no first page: nothing matches
        else:
            return  # past the last page: counted on its own, and a page nearer read
        self._read = (number, rows)

    def page(self, number: Any) -> Page:
        number = self.validate_number(number)
        if self._read is None or self._read[0] != number:
            return super().page(number)
        bottom = (number - 1) * self.per_page
        top = bottom + self.per_page
        if top + self.orphans >= self.count:
            top = self.count
        return self._get_page(self._read[1][: max(0, top - bottom)], number, self)

    @cached_property
    def limit(self) -> int:
        """Count up to here: the cap, or a few pages past the page asked for."""
        return max(self.cap, (self.wanted_page + 5) * self.per_page)

    @cached_property
    def count(self) -> int:
        # One more than the limit: "is there more?" (and a next page to go to).
        return self.object_list.order_by()[: self.limit + 1].count()

    @property
    def capped(self) -> bool:
        return self.count > self.limit

    @cached_property
    def items_count_label(self) -> str:
        if self.capped:
            return _("More than %(count)s %(items)s") % {
                "count": number_format(self.limit, force_grouping=True),
                "items": self.verbose_name_plural,
            }
        return super().items_count_label
