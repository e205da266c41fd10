"""Signals wagtail-maillog sends, for other apps (and its own parts) to follow."""

from django.dispatch import Signal

#: Recipients changed status. Sent once per batch of events, after the
#: transaction that stored them committed.
#: provides args: changes (list of :class:`wagtail_maillog.recording.StatusChange`)
status_changed = Signal()
