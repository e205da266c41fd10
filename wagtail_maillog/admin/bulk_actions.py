"""Bulk actions on mail log rows (Wagtail's bulk-action framework)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from .. import actions
from ..models import Recipient
from .access import RESEND, can_view_log, visible_recipients
from .confirming_bulk_action import ConfirmingBulkAction
from .filters import MailLogFilterSet
from .search import search_recipients


class ResendBulkAction(ConfirmingBulkAction):
    """Send the chosen rows again: one new message per original message."""

    display_name = _("Resend")
    action_type = "resend"
    aria_label = _("Resend the selected mail")
    title = _("Resend mail")
    question = _("Send these mails again? Each becomes a new message linked to the old one.")
    refused_text = _(
        "You cannot resend these (no permission, or they had attachments or no stored body):"
    )
    button_text = _("Yes, resend")
    header_icon = "mail"
    list_class = "maillog-resend"
    item_template = "wagtail_maillog/bulk_actions/resend_item.html"
    models = [Recipient]
    action_priority = 10
    permission = RESEND  # the footer shows the button only to those who have it

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not can_view_log(request.user):  # as the mail log's own pages
            raise PermissionDenied
        return super().dispatch(request, *args, **kwargs)

    def get_actionable_objects(self) -> tuple[list[Recipient], dict[str, Any]]:
        """The chosen rows the user may see; those they may not resend listed apart."""
        user = self.request.user
        queryset = visible_recipients(user).select_related("message").order_by("message_id", "pk")
        ids = self.request.GET.getlist("id")
        if "all" in ids:
            filters = MailLogFilterSet(
                data=self.request.GET, request=self.request, queryset=queryset
            )
            queryset = filters.qs if filters.is_valid() else queryset.none()
            queryset = search_recipients(queryset, self.request.GET.get("q", ""))
        else:
            queryset = queryset.filter(pk__in=[i for i in ids if i.isdigit()])
        allowed, refused = [], []
        may_resend = user.has_perm(RESEND)
        for recipient in queryset:
            ok = may_resend and not actions.resend_refusal(recipient.message)
            (allowed if ok else refused).append(recipient)
        return allowed, {"items_with_no_access": refused}

    @classmethod
    def execute_action(cls, objects: list[Recipient], user: Any = None, **kwargs: Any) -> tuple:
        by_message: dict[int, list[Recipient]] = defaultdict(list)
        for recipient in objects:
            by_message[recipient.message_id].append(recipient)
        sent = 0
        for chosen in by_message.values():
            result = actions.resend(chosen[0].message, user=user, recipients=chosen)
            sent += 0 if result.error else len(chosen)
        return sent, 0

    def get_success_message(self, num_parent_objects: int, num_child_objects: int) -> str:
        return ngettext(
            "%(count)d mail was sent again.", "%(count)d mails were sent again.", num_parent_objects
        ) % {"count": num_parent_objects}
