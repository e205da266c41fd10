"""Wagtail reads the hooks of an app here: this module only gathers each capability's
own ``wagtail_hooks`` (the shared Mail menu and stylesheet, the mail log, the outbox,
member addresses, mailings). See docs/architecture.md."""

from .addresses import wagtail_hooks as addresses_hooks  # noqa: F401
from .admin import wagtail_hooks as shared_hooks  # noqa: F401
from .admin.menu import MAIL_MENU_HOOK, mail_menu  # noqa: F401 (public: add a Mail page)
from .deliverability import wagtail_hooks as deliverability_hooks  # noqa: F401
from .log import wagtail_hooks as log_hooks  # noqa: F401
from .mailings import wagtail_hooks as mailings_hooks  # noqa: F401
from .outbox import wagtail_hooks as outbox_hooks  # noqa: F401
