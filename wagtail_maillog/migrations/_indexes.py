"""An index rebuilt as partial, or whole again, by a migration (0019, 0020).

Only where the database has partial indexes (SQLite, PostgreSQL): MariaDB/MySQL
would rebuild the same whole index. PostgreSQL: the new index is built beside the
old one without blocking writes (``CONCURRENTLY``, so the migration runs outside a
transaction), then takes its name. SQLite: dropped and created in one transaction.
(Django's loader takes no module starting with ``_`` for a migration.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db import migrations, models, transaction


def rebuild(
    model_name: str, name: str, fields: list[str], condition: models.Q, partial: bool
) -> Callable[[Any, Any], None]:
    """A ``RunPython`` function that makes the index ``name`` partial (``condition``)
    or, with ``partial=False``, whole again."""

    def index(partial: bool, called: str = name) -> models.Index:
        return models.Index(fields=fields, name=called, condition=condition if partial else None)

    def run(apps: Any, schema_editor: Any) -> None:
        connection = schema_editor.connection
        if not connection.features.supports_partial_indexes:
            return
        model = apps.get_model("wagtail_maillog", model_name)
        old = index(not partial)
        if connection.vendor != "postgresql":
            with transaction.atomic(using=connection.alias):
                schema_editor.remove_index(model, old)
                schema_editor.add_index(model, index(partial))
            return
        building = index(partial, called=f"{name}_new")
        quote = schema_editor.quote_name
        # a build interrupted before leaves an invalid index of that name
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {quote(building.name)}")
        schema_editor.execute(building.create_sql(model, schema_editor, concurrently=True))
        schema_editor.execute(old.remove_sql(model, schema_editor, concurrently=True))
        schema_editor.execute(f"ALTER INDEX {quote(building.name)} RENAME TO {quote(name)}")

    return run


def made_partial(
    model_name: str, name: str, fields: list[str], condition: models.Q
) -> list[migrations.operations.base.Operation]:
    """A migration's operations that make the index ``name`` partial: the model's
    state as Django would write it, the database's by :func:`rebuild` (either way)."""
    index = models.Index(fields=fields, name=name, condition=condition)
    arguments = (model_name, name, fields, condition)
    return [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveIndex(model_name=model_name, name=name),
                migrations.AddIndex(model_name=model_name, index=index),
            ],
            database_operations=[
                migrations.RunPython(
                    rebuild(*arguments, partial=True), rebuild(*arguments, partial=False)
                )
            ],
        )
    ]
