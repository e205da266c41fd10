"""wagtail-maillog: every email a Wagtail site sends, and what became of it."""

from .context import label, mail_context

__all__ = ["label", "mail_context"]
__version__ = "0.1.0"
