"""ESP payloads keep the ESP's key order: on PostgreSQL ``Event.raw`` and
``SendAttempt.response`` become ``json`` columns (``jsonb`` reorders keys).

Only PostgreSQL's columns change (wagtail_maillog/models/fields.py). SQLite and
MariaDB keep their columns as they are: the type is the same there, and a plain
AlterField would copy the whole event table on SQLite for nothing.

On PostgreSQL the ALTER rewrites each table under an exclusive lock (minutes
for millions of events). Rows stored before keep the key order ``jsonb`` gave
them. Backwards, the columns become ``jsonb`` again.
"""

from django.db import migrations

import wagtail_maillog.models.fields


class AlterFieldOnPostgreSQL(migrations.AlterField):
    """AlterField whose schema change runs on PostgreSQL only."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            super().database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            super().database_backwards(app_label, schema_editor, from_state, to_state)


class Migration(migrations.Migration):
    dependencies = [("wagtail_maillog", "0009_mailing_outcome")]

    operations = [
        AlterFieldOnPostgreSQL(
            model_name="event",
            name="raw",
            field=wagtail_maillog.models.fields.PayloadJSONField(
                blank=True, null=True, verbose_name="raw ESP payload"
            ),
        ),
        AlterFieldOnPostgreSQL(
            model_name="sendattempt",
            name="response",
            field=wagtail_maillog.models.fields.PayloadJSONField(
                blank=True, null=True, verbose_name="ESP response"
            ),
        ),
    ]
