"""Forms of the mailing pages: composing, and sending or scheduling."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from wagtail.admin.forms import WagtailAdminModelForm
from wagtail.admin.widgets import AdminDateTimeInput

from ..mailings import audiences
from ..outbox import connectors


def connector_choices() -> list[tuple[str, str]]:
    default = connectors.default_name()
    named = [(name, name) for name in connectors.configured()]
    return [("", _("Default (%(name)s)") % {"name": default}), *named]


class MailingForm(WagtailAdminModelForm):
    """Audience and connector are chosen from what is registered and configured now."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "audience" in self.fields:
            self.fields["audience"] = forms.ChoiceField(
                label=_("Audience"),
                choices=audiences.choices(),
                help_text=_(
                    "Only members with a confirmed address and no problem get the mailing; "
                    "the preview tells how many are left out and why."
                ),
            )
        if "connector" in self.fields:
            self.fields["connector"] = forms.ChoiceField(
                label=_("Connector"), choices=connector_choices(), required=False
            )

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if not data.get("page") and not (data.get("body") or "").strip():
            self.add_error("body", _("Write a body or choose a page to send."))
        return data


class SendForm(forms.Form):
    WHEN_CHOICES = [("now", _("Send now")), ("later", _("Send at a time"))]

    when = forms.ChoiceField(
        label=_("When"), choices=WHEN_CHOICES, initial="now", widget=forms.RadioSelect
    )
    send_at = forms.DateTimeField(label=_("Send at"), required=False, widget=AdminDateTimeInput)

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("when") == "later":
            send_at = data.get("send_at")
            if send_at is None:
                self.add_error("send_at", _("Choose when to send it."))
            elif send_at <= timezone.now():
                self.add_error("send_at", _("Choose a time in the future."))
        else:
            data["send_at"] = None
        return data
