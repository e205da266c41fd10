"""The outbox: queued sending through django-q2 with retries, undo-send and scheduling."""
