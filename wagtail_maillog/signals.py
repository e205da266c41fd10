"""Signals wagtail-maillog sends, for other apps (and its own parts) to follow."""

from django.dispatch import Signal

#: Recipients changed status: through ESP events (once per batch) or the ESP's
#: answer at send time. Sent after the transaction that stored them committed.
#: provides args: changes (list of :class:`wagtail_maillog.events.StatusChange`)
status_changed = Signal()
