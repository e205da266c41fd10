"""Trigram indexes for the mail log's search, on PostgreSQL only.

The search for part of an address or subject is ``UPPER(col::text) LIKE
UPPER('%text%')`` (Django's ``icontains``); a GIN index with ``pg_trgm``'s
operator class on the same expression answers it without reading the log
(wagtail_maillog/admin/search.py). Other databases have no such index and
skip this migration.

Non-atomic so the indexes are built ``CONCURRENTLY``: a large existing log
keeps taking mail while they build. ``pg_trgm`` is a trusted extension
(PostgreSQL 13+): the database's owner may create it. When the extension
cannot be created, the migration says so and leaves the search unindexed;
the system check ``wagtail_maillog.W006`` keeps saying so until it is fixed
(docs/performance.md).
"""

import logging

from django.db import DatabaseError, migrations

logger = logging.getLogger("wagtail_maillog")

#: (index name, table, indexed expression)
INDEXES = [
    ("maillog_rcpt_address_trgm", "wagtail_maillog_recipient", '(UPPER("address"::text))'),
    ("maillog_msg_subject_trgm", "wagtail_maillog_message", '(UPPER("subject"::text))'),
]


def create(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        try:
            cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        except DatabaseError as exc:
            logger.warning(
                "wagtail_maillog: could not create the pg_trgm extension (%s); the mail "
                "log's search will read the whole log. See wagtail_maillog.W006.",
                exc,
            )
            return
        for name, table, expression in INDEXES:
            cursor.execute(
                f'CREATE INDEX CONCURRENTLY IF NOT EXISTS "{name}" ON "{table}" '
                f"USING gin ({expression} gin_trgm_ops)"
            )


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        for name, _table, _expression in INDEXES:
            cursor.execute(f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"')


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("wagtail_maillog", "0004_mailings"),
    ]

    operations = [
        migrations.RunPython(create, drop, elidable=False),
    ]
