"""A panel for any page or snippet edit view: the mails about this object."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy as _
from wagtail.admin.panels import Panel

from ..templatetags.maillog_tags import related_mail_context
from .access import can_view_log


class RelatedMailPanel(Panel):
    """Shows the newest mails related to the edited object, with their status.

    ``panels = [FieldPanel("name"), RelatedMailPanel()]``
    """

    def __init__(self, limit: int = 10, **kwargs: Any) -> None:
        kwargs.setdefault("heading", _("Mail"))
        super().__init__(**kwargs)
        self.limit = limit

    def clone_kwargs(self) -> dict[str, Any]:
        kwargs = super().clone_kwargs()
        kwargs["limit"] = self.limit
        return kwargs

    class BoundPanel(Panel.BoundPanel):
        template_name = "wagtail_maillog/panels/related_mail.html"

        def is_shown(self) -> bool:
            return (
                self.instance is not None
                and self.instance.pk is not None
                and can_view_log(self.request.user)
            )

        def get_context_data(self, parent_context: Any = None) -> dict[str, Any]:
            context = super().get_context_data(parent_context)
            context.update(related_mail_context(self.instance, self.request.user, self.panel.limit))
            return context
