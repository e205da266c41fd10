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
#: provides args: changes, last_event_stored (True when the one-event webhook path
#: already wrote the addresses' ``last_event_at`` in its own statement)
status_changing = Signal()

#: The ``dispatch_uid`` of address health's receiver of ``status_changing``: while it
#: is the only one, a one-event webhook whose event marks no address needs no
#: transaction of its own (see ``events._unlocked``).
HEALTH_RECEIVER = "wagtail_maillog.health"

#: A deliverability rate of the last 7 days crossed a threshold (a bounce or spam
#: complaint rate the mailbox providers or ESPs enforce), or went up a level. Sent
#: once per crossing by the rollup's scheduled task, after it committed.
#: provides args: rate ("bounce", "complaint"), level ("warning", "critical"),
#: value (the rate, a fraction), threshold (the limit crossed), days (7)
threshold_crossed = Signal()
