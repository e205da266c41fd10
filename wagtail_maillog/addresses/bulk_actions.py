"""Bulk actions on the Addresses page (Wagtail's bulk-action framework).

Both need ``manage_addresses`` (without it the pages answer as Wagtail does to
``PermissionDenied``). Chosen addresses the action does not apply to (a
request to a confirmed or problem address, clearing an address without a
problem) are listed apart on the confirmation page and left alone.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from ..addresses import confirmation, health
from ..admin.confirming_bulk_action import ConfirmingBulkAction
from ..models import Address, AddressStatus
from .views import MANAGE, can_manage_addresses, listing_queryset


class AddressBulkAction(ConfirmingBulkAction):
    models = [Address]
    header_icon = "group"
    list_class = "maillog-address-bulk"
    item_template = "wagtail_maillog/addresses/bulk_item.html"
    gone_text = _("None of the chosen addresses exists any more.")
    permission = MANAGE  # the footer shows the button only to those who have it

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not can_manage_addresses(request.user):
            raise PermissionDenied
        return super().dispatch(request, *args, **kwargs)

    @staticmethod
    def applies(address: Address) -> bool:
        raise NotImplementedError

    def get_actionable_objects(self) -> tuple[list[Address], dict[str, Any]]:
        ids = self.request.GET.getlist("id")
        if "all" in ids:  # "select all in listing": the listing's filters and search
            queryset = listing_queryset(self.request)
        else:
            queryset = Address.objects.filter(pk__in=[i for i in ids if i.isdigit()])
        allowed, refused = [], []
        for address in queryset.defer("nonce").order_by("address"):
            (allowed if self.applies(address) else refused).append(address)
        return allowed, {"items_with_no_access": refused}


class SendConfirmationBulkAction(AddressBulkAction):
    display_name = _("Send confirmation request")
    action_type = "send_confirmation"
    aria_label = _("Send a confirmation request to the selected addresses")
    action_priority = 10
    title = _("Send confirmation request")
    question = _(
        "Email a confirmation link to these addresses? Each gets a new link; "
        "links sent earlier stop working."
    )
    refused_text = _("These are left alone (already confirmed, or they have a problem):")
    button_text = _("Yes, send")

    @staticmethod
    def applies(address: Address) -> bool:
        return not address.has_problem and address.status != AddressStatus.CONFIRMED

    @classmethod
    def execute_action(cls, objects: list[Address], user: Any = None, **kwargs: Any) -> tuple:
        return confirmation.send_requests([a.address for a in objects], user=user), 0

    def get_success_message(self, num_parent_objects: int, num_child_objects: int) -> str:
        return ngettext(
            "%(count)d confirmation request was sent.",
            "%(count)d confirmation requests were sent.",
            num_parent_objects,
        ) % {"count": num_parent_objects}


class ClearProblemBulkAction(AddressBulkAction):
    display_name = _("Clear problem")
    action_type = "clear_problem"
    aria_label = _("Clear the problem of the selected addresses")
    action_priority = 20
    title = _("Clear problem")
    question = _(
        "Clear the problem of these addresses? Do this once the member has fixed it "
        "(for example a full mailbox emptied). They become unconfirmed and mail to them "
        "is sent again; the problem stays in their history."
    )
    refused_text = _("These have no problem to clear:")
    button_text = _("Yes, clear the problem")

    @staticmethod
    def applies(address: Address) -> bool:
        return address.has_problem

    @classmethod
    def execute_action(cls, objects: list[Address], user: Any = None, **kwargs: Any) -> tuple:
        return health.clear_problem(objects, user=user), 0

    def get_success_message(self, num_parent_objects: int, num_child_objects: int) -> str:
        return ngettext(
            "The problem of %(count)d address was cleared.",
            "The problems of %(count)d addresses were cleared.",
            num_parent_objects,
        ) % {"count": num_parent_objects}
