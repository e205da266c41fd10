"""Panels: a member's address status on its edit view, and the dashboard summary."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.urls import reverse
from django.utils.http import urlencode
from django.utils.translation import gettext_lazy as _
from wagtail.admin.panels import Panel
from wagtail.admin.ui.components import Component

from ..addresses import members
from ..models import Address, AddressStatus
from .tables import address_badge
from .views import (
    INDEX,
    can_manage_addresses,
    clear_url,
    newest_problems,
    send_refusal,
    send_url,
    status_counts,
)


class AddressStatusPanel(Panel):
    """The status of the edited member's address, with what can be done about it.

    For a model registered with :func:`wagtail_maillog.addresses.members.register`::

        panels = [FieldPanel("name"), FieldPanel("email"), AddressStatusPanel()]

    Everyone who can open the edit view sees the status; the buttons (send a
    confirmation request, clear a problem, open the address) need
    ``manage_addresses``.
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("heading", _("Email address status"))
        super().__init__(**kwargs)

    class BoundPanel(Panel.BoundPanel):
        template_name = "wagtail_maillog/addresses/panel.html"

        def is_shown(self) -> bool:
            return self.instance is not None and self.instance.pk is not None

        def get_context_data(self, parent_context: Any = None) -> dict[str, Any]:
            context = super().get_context_data(parent_context)
            address = members.address_of(self.instance)
            row = Address.objects.filter(address=address).first() if address else None
            manage = can_manage_addresses(getattr(self.request, "user", None))
            here = self.request.get_full_path() if self.request is not None else ""
            context.update(
                address=address,
                row=row,
                badge=address_badge(row.status if row else AddressStatus.UNCONFIRMED),
                manage=manage,
                refusal=send_refusal(row),
                send_url=send_url(address, here) if address else "",
                clear_url=clear_url(row, here) if row and row.has_problem else "",
                detail_url=(
                    reverse("wagtail_maillog_addresses:detail", args=[row.pk]) if row else ""
                ),
            )
            return context


class AddressesDashboardPanel(Component):
    """On the Wagtail home page: addresses per status, and the newest problems."""

    name = "maillog_addresses"
    template_name = "wagtail_maillog/addresses/dashboard_panel.html"
    order = 160

    def get_context_data(self, parent_context: Mapping[str, Any] | None = None) -> dict[str, Any]:
        counts = status_counts()
        index = reverse(INDEX)
        return {
            "statuses": [
                {
                    "status": status,
                    "label": label,
                    "count": counts[status],
                    "badge": address_badge(status),
                    "url": f"{index}?{urlencode({'status': status})}",
                }
                for status, label in AddressStatus.choices
            ],
            "total": sum(counts.values()),
            "problems": [
                {
                    "address": row,
                    "badge": address_badge(row.status, row.reason),
                    "url": reverse("wagtail_maillog_addresses:detail", args=[row.pk]),
                }
                for row in newest_problems(5)
            ],
            "problems_url": f"{index}?{urlencode({'problem': 'true'})}",
            "index_url": index,
        }


def add_dashboard_panel(request: Any, panels: list[Any]) -> None:
    """``construct_homepage_panels`` hook: only for users who may manage addresses."""
    if can_manage_addresses(request.user):
        panels.append(AddressesDashboardPanel())
