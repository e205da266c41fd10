"""The events' ``(esp_message_id, address)`` index only for orphans
(``WHERE recipient_id IS NULL``), issue 20.

Its one lookup is an orphan's adoption (``events.attach_orphans``: the events that
arrived before their mail's ESP id was stored, by ESP id, recipient unknown). A
matched event, nearly every one, wrote an entry into it: on SQLite 1.2 WAL pages of
the 10.7 a one-event webhook writes. An adopted orphan leaves it. Rebuilt by
:func:`._indexes.rebuild`; MariaDB/MySQL keep theirs whole.
"""

from django.db import migrations, models

from ._indexes import made_partial

NAME = "maillog_event_espid"
FIELDS = ["esp_message_id", "address"]
CONDITION = models.Q(recipient__isnull=True)


class Migration(migrations.Migration):
    atomic = False  # PostgreSQL builds it CONCURRENTLY

    dependencies = [
        ("wagtail_maillog", "0019_recipient_espid_partial"),
    ]

    operations = made_partial("event", NAME, FIELDS, CONDITION)
