"""The events' ``(esp_message_id, address)`` index only for orphans
(``WHERE recipient_id IS NULL``), issue 20.

Its one lookup is an orphan's adoption (``events.attach_orphans``: the events that
arrived before their mail's ESP id was stored, by ESP id, recipient unknown). A
matched event, nearly every one, wrote an entry into it: on SQLite 1.2 WAL pages of
the 10.7 a one-event webhook writes. An adopted orphan leaves it. Rebuilt by
:func:`._indexes.rebuild`; MariaDB/MySQL keep theirs whole.
"""

from django.db import migrations, models

from ._indexes import rebuild

NAME = "maillog_event_espid"
FIELDS = ["esp_message_id", "address"]
CONDITION = models.Q(recipient__isnull=True)


class Migration(migrations.Migration):
    atomic = False  # PostgreSQL builds it CONCURRENTLY

    dependencies = [
        ("wagtail_maillog", "0019_recipient_espid_partial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveIndex(model_name="event", name=NAME),
                migrations.AddIndex(
                    model_name="event",
                    index=models.Index(fields=FIELDS, name=NAME, condition=CONDITION),
                ),
            ],
            database_operations=[
                migrations.RunPython(
                    rebuild("event", NAME, FIELDS, CONDITION, partial=True),
                    rebuild("event", NAME, FIELDS, CONDITION, partial=False),
                )
            ],
        ),
    ]
