"""The recipients' ``(esp_message_id, address)`` index only where the ESP took the
mail (``WHERE NOT (esp_message_id = '')``), issue 20.

Every queued recipient wrote an entry under '' into it that no lookup wanted (a
WAL page of about 18 in a queued mail's commit on SQLite), and its hand-over moved
that entry to the ESP's id. Lookups by ESP id now carry the condition
(``models.messages.handed_over``, the ORM's ``.exclude(esp_message_id="")``).

PostgreSQL: built beside the old index without blocking writes (``CONCURRENTLY``,
hence a migration outside a transaction), then swapped for it. SQLite: dropped and
created in one transaction. MariaDB/MySQL have no partial indexes: theirs stays
whole, untouched.
"""

from django.db import migrations, models, transaction

NAME = "maillog_rcpt_espid"
FIELDS = ["esp_message_id", "address"]


def _index(partial: bool, name: str = NAME) -> models.Index:
    condition = ~models.Q(esp_message_id="") if partial else None
    return models.Index(fields=FIELDS, name=name, condition=condition)


def _rebuild(partial: bool):
    def rebuild(apps, schema_editor):
        connection = schema_editor.connection
        if not connection.features.supports_partial_indexes:
            return
        recipient = apps.get_model("wagtail_maillog", "Recipient")
        old = _index(not partial)
        if connection.vendor != "postgresql":
            with transaction.atomic(using=connection.alias):
                schema_editor.remove_index(recipient, old)
                schema_editor.add_index(recipient, _index(partial))
            return
        building = _index(partial, name=f"{NAME}_new")
        quote = schema_editor.quote_name
        # a build interrupted before leaves an invalid index of that name
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {quote(building.name)}")
        schema_editor.execute(building.create_sql(recipient, schema_editor, concurrently=True))
        schema_editor.execute(old.remove_sql(recipient, schema_editor, concurrently=True))
        schema_editor.execute(f"ALTER INDEX {quote(building.name)} RENAME TO {quote(NAME)}")

    return rebuild


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("wagtail_maillog", "0018_outbox_no_connector_index"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveIndex(model_name="recipient", name=NAME),
                migrations.AddIndex(model_name="recipient", index=_index(partial=True)),
            ],
            database_operations=[migrations.RunPython(_rebuild(True), _rebuild(False))],
        ),
    ]
