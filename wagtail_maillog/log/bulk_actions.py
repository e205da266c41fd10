"""Bulk actions on mail log rows (Wagtail's bulk-action framework)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext_lazy as _
from wagtail.admin import messages

from .. import actions
from ..admin.confirming_bulk_action import ConfirmingBulkAction
from ..models import Recipient
from .access import RESEND, can_view_log, visible_recipients
from .filters import MailLogFilterSet
from .search import search_recipients


class ResendBulkAction(ConfirmingBulkAction):
    """Send the chosen rows again: one new message per original message, and for a
    mailing one per member. Rows whose address a resend would not reach now (a
    problem status; for a mailing, not confirmed) are listed apart and left out."""

    display_name = _("Resend")
    action_type = "resend"
    aria_label = _("Resend the selected mail")
    title = _("Resend mail")
    question = _(
        "Send these mails again? Each becomes a new message linked to the old one; "
        "each member of a mailing gets their own copy."
    )
    refused_text = _(
        "You cannot resend these (no permission, or the message cannot be resent: "
        "attachments, no stored body; its page says why):"
    )
    held_text = _(
        "Left out, because a resend would not reach these addresses now (their status is "
        "shown). To try anyway, resend from the message's own page:"
    )
    button_text = _("Yes, resend")
    header_icon = "mail"
    list_class = "maillog-resend"
    template_name = "wagtail_maillog/bulk_actions/resend_confirm.html"
    item_template = "wagtail_maillog/bulk_actions/resend_item.html"
    models = [Recipient]
    action_priority = 10
    permission = RESEND  # the footer shows the button only to those who have it

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not can_view_log(request.user):  # as the mail log's own pages
            raise PermissionDenied
        return super().dispatch(request, *args, **kwargs)

    def get_actionable_objects(self) -> tuple[list[Recipient], dict[str, Any]]:
        """The chosen rows the user may see; those they may not resend, and those a
        resend would not reach, listed apart."""
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
        may_resend = user.has_perm(RESEND)
        by_message: dict[int, list[Recipient]] = defaultdict(list)
        refused: list[Recipient] = []
        for recipient in queryset:
            by_message[recipient.message_id].append(recipient)
        allowed: list[Recipient] = []
        held: list[Recipient] = []
        for rows in by_message.values():
            message = rows[0].message
            if not may_resend or actions.resend_refusal(message):
                refused.extend(rows)
                continue
            reasons = actions.held_back(message, {r.address for r in rows})
            for r in rows:
                r.held_reason = reasons.get(r.address, "")
                (held if r.held_reason else allowed).append(r)
        return allowed, {"items_with_no_access": refused, "items_held_back": held}

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context["held_text"] = self.held_text
        return context

    def get_execution_context(self) -> dict[str, Any]:
        self.results: list[actions.ResendResult] = []
        return {**super().get_execution_context(), "results": self.results}

    @classmethod
    def execute_action(
        cls,
        objects: list[Recipient],
        user: Any = None,
        results: list[actions.ResendResult] | None = None,
        **kwargs: Any,
    ) -> tuple[int, int]:
        by_message: dict[int, list[Recipient]] = defaultdict(list)
        for recipient in objects:
            by_message[recipient.message_id].append(recipient)
        done = [] if results is None else results
        for chosen in by_message.values():
            try:
                done.append(actions.resend(chosen[0].message, user=user, recipients=chosen))
            except actions.ActionRefused as refusal:  # found only now (a mailing's page)
                failed = {r.address: str(refusal) for r in chosen}
                done.append(actions.ResendResult(original=chosen[0].message, failed=failed))
        return sum(len(r.sent) + len(r.queued) for r in done), 0

    def get_success_message(self, num_parent_objects: int, num_child_objects: int) -> None:
        """Says itself what went, and to whom nothing went (not only "success")."""
        level, text = actions.describe(getattr(self, "results", []))
        getattr(messages, level)(self.request, text)
        return None
