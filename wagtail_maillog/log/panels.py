"""A panel for any page or snippet edit view: the mails to and about this object."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy as _
from wagtail.admin.panels import Panel

from ..addresses import members
from ..templatetags.maillog_tags import related_mail_context
from .access import can_view_log


class RelatedMailPanel(Panel):
    """Shows the newest mails related to the edited object, with their status.

    For a registered member model (``members.register``) it also lists the mail
    sent to the member's address, and its heading reads "Mail to and about this member".

    ``panels = [FieldPanel("name"), RelatedMailPanel()]``
    """

    def __init__(self, limit: int = 10, **kwargs: Any) -> None:
        # Remembered so that a clone bound to a member model may pick its own heading.
        self.heading_given = bool(kwargs.get("heading"))
        kwargs.setdefault("heading", _("Mail"))
        kwargs.setdefault("icon", "mail")
        super().__init__(**kwargs)
        self.limit = limit

    def clone_kwargs(self) -> dict[str, Any]:
        kwargs = super().clone_kwargs()
        kwargs["limit"] = self.limit
        if not self.heading_given:
            del kwargs["heading"]
        return kwargs

    def on_model_bound(self) -> None:
        if not self.heading_given and any(s.model is self.model for s in members.registered()):
            self.heading = _("Mail to and about this member")

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
