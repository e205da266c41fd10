"""The recipients' ``(esp_message_id, address)`` index only where the ESP took the
mail (``WHERE NOT (esp_message_id = '')``), issue 20.

Every queued recipient wrote an entry under '' into it that no lookup wanted (a
WAL page of about 18 in a queued mail's commit on SQLite), and its hand-over moved
that entry to the ESP's id. Lookups by ESP id now carry the condition
(``models.messages.handed_over``, the ORM's ``.exclude(esp_message_id="")``).
Rebuilt by :func:`._indexes.rebuild`; MariaDB/MySQL keep theirs whole.
"""

from django.db import migrations, models

from ._indexes import made_partial

NAME = "maillog_rcpt_espid"
FIELDS = ["esp_message_id", "address"]
CONDITION = ~models.Q(esp_message_id="")


class Migration(migrations.Migration):
    atomic = False  # PostgreSQL builds it CONCURRENTLY

    dependencies = [
        ("wagtail_maillog", "0018_outbox_no_connector_index"),
    ]

    operations = made_partial("recipient", NAME, FIELDS, CONDITION)
