"""What the outbox's and the addresses' bulk actions share: their confirmation page."""

from __future__ import annotations

from typing import Any

from wagtail.admin.views.bulk_action import BulkAction


class ConfirmingBulkAction(BulkAction):
    """A bulk action whose confirmation page asks a question and lists what is refused."""

    template_name = "wagtail_maillog/bulk_actions/confirm.html"
    #: Texts of the confirmation page.
    title: Any = ""
    question: Any = ""
    refused_text: Any = ""
    button_text: Any = ""
    button_class = ""
    #: Shown when none of the chosen rows is there any more.
    gone_text: Any = ""
    #: The page's header icon, the lists' CSS class prefix, and the template of one row
    #: (given ``item``).
    header_icon = ""
    list_class = ""
    item_template = ""

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context.update(
            title=self.title,
            question=self.question,
            refused_text=self.refused_text,
            action_button_text=self.button_text,
            action_button_class=self.button_class,
            gone_text=self.gone_text,
            header_icon=self.header_icon,
            list_class=self.list_class,
            item_template=self.item_template,
        )
        return context

    def get_execution_context(self) -> dict[str, Any]:
        return {"user": self.request.user}
