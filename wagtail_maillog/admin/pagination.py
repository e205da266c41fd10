"""Paginators the admin listings share."""

from __future__ import annotations

from typing import Any

from django.utils.formats import number_format
from django.utils.functional import cached_property
from django.utils.translation import gettext as _
from wagtail.admin.paginator import WagtailPaginator

#: The mail log counts matching rows up to this many; beyond it says "10,000+".
COUNT_CAP = 10_000


class CappedPaginator(WagtailPaginator):
    """Counts at most ``COUNT_CAP`` rows (further when a later page is asked for).

    ``COUNT(*)`` of a million-row log reads every row (every index entry) on
    each page view; counting through ``LIMIT`` stops once the cap is passed.
    Past the cap the pages run on: each later page counts a little further.
    """

    cap = COUNT_CAP
    wanted_page = 1

    def get_page(self, number: Any) -> Any:
        try:
            self.wanted_page = max(1, int(number))
        except (TypeError, ValueError):
            self.wanted_page = 1
        return super().get_page(number)

    @cached_property
    def limit(self) -> int:
        """Count up to here: the cap, or a few pages past the page asked for."""
        return max(self.cap, (self.wanted_page + 5) * self.per_page)

    @cached_property
    def count(self) -> int:
        # One more than the limit: "is there more?" (and a next page to go to). Without
        # ORDER BY: which rows are counted does not matter, and the database may then
        # read them in any order (not, say, along an index in the listing's order).
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
