"""Names of the places mail comes from ("sent from"), for people to read.

A source is a short code stored on each message (``invoice``, ``newsletter``).
Known ones have a translated label; others are shown with their code made
readable. Sites add their own with ``WAGTAIL_MAILLOG["SOURCE_LABELS"]``.
"""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _

from .conf import get_setting

BUILT_IN = {
    "system": _("System"),
    "password_reset": _("Password reset"),
    "wagtail_notification": _("Wagtail notification"),
    "error_report": _("Error report"),
    "form": _("Form"),
    "mailing": _("Mailing"),
    "mailing_test": _("Mailing test"),
    "newsletter": _("Newsletter"),
    "integration": _("Integration"),
    "confirmation": _("Address confirmation"),
}


def source_label(code: str) -> str:
    if not code:
        return ""
    labels = {**BUILT_IN, **(get_setting("SOURCE_LABELS") or {})}
    if code in labels:
        return str(labels[code])
    return code.replace("_", " ").replace("-", " ").capitalize()
