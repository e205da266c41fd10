"""The mail log in the Wagtail admin: list, message page, resend, cancel, export,
the related-mail panel (the record itself: recording.py, events.py)."""
