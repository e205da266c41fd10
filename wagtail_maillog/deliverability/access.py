"""Who may see the deliverability page, its CSV and its dashboard panel.

One permission, ``wagtail_maillog.view_deliverability`` (Settings → Groups, "Can
view deliverability"): the figures are counts without addresses, but they tell
how the site's mail fares, which not every editor needs to know.
"""

from __future__ import annotations

from typing import Any

VIEW_DELIVERABILITY = "wagtail_maillog.view_deliverability"


def can_view_deliverability(user: Any) -> bool:
    return bool(user and user.is_active and user.has_perm(VIEW_DELIVERABILITY))
