"""Signals wagtail-maillog sends, for other apps (and its own parts) to follow."""

from django.dispatch import Signal

#: Recipients changed status: through ESP events (once per batch) or the ESP's
#: answer at send time. Sent after the transaction that stored them committed.
#: provides args: changes (list of :class:`wagtail_maillog.events.StatusChange`)
status_changed = Signal()

#: The same changes, sent inside the transaction that stores them, before
#: ``status_changed``: a receiver that raises undoes the store (the webhook then
#: answers 503 and the ESP sends the events again). Address health listens
#: (connected in ``apps.ready``), so the event store needs no import of it.
#: provides args: changes
status_changing = Signal()
