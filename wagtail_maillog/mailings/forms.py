"""Forms of the mailing pages: composing, and sending or scheduling."""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from wagtail.admin.forms import WagtailAdminModelForm
from wagtail.admin.widgets import AdminDateTimeInput, AdminPageChooser

from ..mailings import audiences, content
from ..outbox import connectors

#: The body's page chooser asks with ``user_perms=`` this (Wagtail passes it along
#: while browsing and searching), so :func:`limit_page_chooser` knows it is ours.
PAGE_CHOOSER_MARK = "maillog_mailing_body"
#: Typed header fields (From is chosen, see :class:`SenderField`): a line break in one
#: would add headers of the composer's choosing.
TYPED_HEADERS = ("subject", "reply_to")
CONTROL_ERROR = _("Line breaks and other control characters are not allowed here.")


def connector_choices() -> list[tuple[str, str]]:
    default = connectors.default_name()
    named = [(name, name) for name in connectors.configured()]
    return [("", _("Default (%(name)s)") % {"name": default}), *named]


def sender_choices(current: str = "") -> list[tuple[str, str]]:
    """The senders the site allows; ``current`` (a saved draft's) is kept as an option
    even when it is no longer allowed, so saving the draft says so instead of
    silently changing it."""
    default, *others = content.allowed_senders()
    choices = [("", _("Site default (%(sender)s)") % {"sender": default})]
    choices += [(sender, sender) for sender in others]
    if current and current not in {value for value, _label in choices}:
        label = current if content.is_allowed_sender(current) else None
        choices.append((current, label or _("%(sender)s (not allowed)") % {"sender": current}))
    return choices


class SenderField(forms.ChoiceField):
    """From: one of the senders the site allows (``MAILING_FROM_ADDRESSES``)."""

    def validate(self, value: Any) -> None:
        if content.has_control_characters(value):
            raise ValidationError(CONTROL_ERROR, code="control_characters")
        if value and not content.is_allowed_sender(value):
            raise ValidationError(
                _("“%(sender)s” is not a sender this site allows; choose one from the list."),
                code="sender_not_allowed",
                params={"sender": value},
            )


def limit_page_chooser(pages: Any, request: HttpRequest) -> Any:
    """The ``construct_page_chooser_queryset`` hook: the body's chooser offers no
    private page, and only pages the user may explore. Other choosers are left alone."""
    if request.GET.get("user_perms") != PAGE_CHOOSER_MARK:
        return pages
    return content.choosable_pages(pages, request.user)


class MailingForm(WagtailAdminModelForm):
    """Audience and connector are chosen from what is registered and configured now;
    the sender from what the site allows; the page from what the user may see."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        current = (self.instance.from_email or "") if self.instance.pk else ""
        if "from_email" in self.fields:
            self.fields["from_email"] = SenderField(
                label=_("From"),
                choices=sender_choices(current),
                required=False,
                help_text=_("Only the senders this site allows are offered."),
            )
        if "page" in self.fields:
            self.fields["page"].widget = AdminPageChooser(user_perms=PAGE_CHOOSER_MARK)
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

        if not self.is_bound and self.instance.pk:
            self._flag_saved_values()

    def _flag_saved_values(self) -> None:
        """A saved draft whose sender or page is no longer allowed shows the error at
        once on its edit page (an unbound form has no errors of its own)."""
        problems = {}
        if "from_email" in self.fields:
            try:
                self.fields["from_email"].validate(self.instance.from_email or "")
            except ValidationError as exc:
                problems["from_email"] = exc
        if "page" in self.fields and self.instance.page_id:
            refusal = content.page_refusal(self.instance.page, self.for_user)
            if refusal:
                problems["page"] = ValidationError(refusal)
        if problems:
            self.cleaned_data: dict[str, Any] = {}
            for name, error in problems.items():
                self.add_error(name, error)

    def clean_page(self) -> Any:
        page = self.cleaned_data.get("page")
        if page is not None:
            refusal = content.page_refusal(page, self.for_user)
            if refusal:
                raise ValidationError(refusal, code="page_not_allowed")
        return page

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        for name in TYPED_HEADERS:
            # The raw value: the field has stripped a trailing line break already.
            raw = self.data.get(self.add_prefix(name), "")
            if name in self.fields and content.has_control_characters(raw):
                self.add_error(name, ValidationError(CONTROL_ERROR, code="control_characters"))
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
