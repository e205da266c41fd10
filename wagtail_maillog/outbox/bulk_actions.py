"""Bulk retry and bulk cancel in the outbox (Wagtail's bulk-action framework).

Only items the user may see are ever looked at: others chosen by id are
ignored, not even listed. Those the user sees but may not act on (no
permission, or the item is being handed over right now) are listed apart on
the confirmation page and left alone.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from ..admin.confirming_bulk_action import ConfirmingBulkAction
from ..models import OutboxItem
from ..outbox import worker
from .access import CANCEL, RETRY, can_view_outbox, visible_outbox
from .tables import cancel_refusal, retry_refusal
from .views import listing_queryset


class OutboxBulkAction(ConfirmingBulkAction):
    models = [OutboxItem]
    header_icon = "time"
    list_class = "maillog-outbox-bulk"
    item_template = "wagtail_maillog/outbox/bulk_item.html"
    gone_text = _("None of the chosen mails is in your outbox any more.")
    permission = ""

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not can_view_outbox(request.user):  # as the outbox's own pages
            raise PermissionDenied
        return super().dispatch(request, *args, **kwargs)

    @staticmethod
    def refusal(item: OutboxItem) -> str:
        raise NotImplementedError

    def get_actionable_objects(self) -> tuple[list[OutboxItem], dict[str, Any]]:
        user = self.request.user
        ids = self.request.GET.getlist("id")
        if "all" in ids:  # "select all in listing": the listing's view, filters and search
            queryset = listing_queryset(self.request)
        else:
            queryset = visible_outbox(user).filter(pk__in=[i for i in ids if i.isdigit()])
        queryset = queryset.select_related("message").defer("payload", "payload_mac")
        allowed, refused = [], []
        permitted = user.has_perm(self.permission)
        for item in queryset.order_by("pk"):
            (allowed if permitted and not self.refusal(item) else refused).append(item)
        return allowed, {"items_with_no_access": refused}


class RetryBulkAction(OutboxBulkAction):
    display_name = _("Retry")
    action_type = "retry"
    aria_label = _("Retry sending the selected mail")
    action_priority = 10
    permission = RETRY
    title = _("Retry sending")
    question = _("Send these mails again now? Each goes back to “retry pending”.")
    refused_text = _(
        "These are left alone (you may not retry, or they are being handed over right now):"
    )
    button_text = _("Yes, retry")
    refusal = staticmethod(retry_refusal)

    @classmethod
    def execute_action(cls, objects: list[OutboxItem], user: Any = None, **kwargs: Any) -> tuple:
        return worker.retry_now(objects, user), 0

    def get_success_message(self, num_parent_objects: int, num_child_objects: int) -> str:
        return ngettext(
            "%(count)d mail will be sent again shortly.",
            "%(count)d mails will be sent again shortly.",
            num_parent_objects,
        ) % {"count": num_parent_objects}


class CancelBulkAction(OutboxBulkAction):
    display_name = _("Cancel")
    action_type = "cancel"
    aria_label = _("Cancel sending the selected mail")
    action_priority = 20
    permission = CANCEL
    title = _("Cancel sending")
    question = _("Cancel sending these mails? They leave the outbox and are never sent.")
    refused_text = _(
        "These are left alone (you may not cancel, or they are being handed over right now):"
    )
    button_text = _("Yes, cancel sending")
    button_class = "no"
    refusal = staticmethod(cancel_refusal)

    @classmethod
    def execute_action(cls, objects: list[OutboxItem], user: Any = None, **kwargs: Any) -> tuple:
        return worker.cancel(objects, user), 0

    def get_success_message(self, num_parent_objects: int, num_child_objects: int) -> str:
        return ngettext(
            "Sending %(count)d mail was cancelled.",
            "Sending %(count)d mails was cancelled.",
            num_parent_objects,
        ) % {"count": num_parent_objects}
