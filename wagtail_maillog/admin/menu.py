"""The Mail menu of the Wagtail admin: each capability adds its page with the hook
``register_maillog_menu_item`` (the mail log, the outbox, addresses, mailings)."""

from __future__ import annotations

from wagtail.admin.menu import Menu

MAIL_MENU_HOOK = "register_maillog_menu_item"
mail_menu = Menu(register_hook_name=MAIL_MENU_HOOK, construct_hook_name="construct_maillog_menu")
