"""What every page of the app shares: the Mail menu and the stylesheet."""

from __future__ import annotations

from django.templatetags.static import static
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from wagtail import hooks
from wagtail.admin.menu import SubmenuMenuItem

from ..outbox.views import MailMenuItem
from .menu import mail_menu


@hooks.register("register_admin_menu_item")
def register_mail_menu() -> SubmenuMenuItem:
    # The top item carries the outbox's count ("Mail (3)"), seen while it is closed.
    return MailMenuItem(_("Mail"), mail_menu, icon_name="mail", name="mail", order=850)


@hooks.register("insert_global_admin_css")
def maillog_css() -> str:
    return format_html(
        '<link rel="stylesheet" href="{}">', static("wagtail_maillog/css/maillog.css")
    )
