"""Set-based writes whose query count does not grow with the number of rows.

Django's ``bulk_create``/``bulk_update`` split their work by the database's
parameter limit (999 on SQLite before Django 6), so 1,000 events became ~25
statements. ``executemany`` sends one statement with many parameter rows: one
round trip on SQLite, a pipeline on psycopg 3, a multi-row insert on MySQL.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.db import connections, models, router
from django.db.models.constants import OnConflict
from django.db.models.sql.subqueries import InsertQuery


def _concrete(model: type[models.Model], names: Sequence[str] | None) -> list[models.Field]:
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    if names is not None:
        fields = [f for f in fields if f.name in names]
    return fields


def insert_ignoring_conflicts(objs: Sequence[models.Model]) -> None:
    """INSERT every object in one ``executemany``; rows that clash are skipped."""
    if not objs:
        return
    model = type(objs[0])
    connection = connections[router.db_for_write(model)]
    fields = _concrete(model, None)
    query = InsertQuery(model, on_conflict=OnConflict.IGNORE)
    query.insert_values(fields, objs[:1])
    sql, _params = query.get_compiler(connection=connection).as_sql()[0]
    rows = [[f.get_db_prep_save(f.pre_save(obj, True), connection) for f in fields] for obj in objs]
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)


def update_fields(objs: Sequence[models.Model], names: Sequence[str]) -> None:
    """UPDATE the named fields of every object (by pk) in one ``executemany``."""
    if not objs:
        return
    model = type(objs[0])
    connection = connections[router.db_for_write(model)]
    fields = _concrete(model, names)
    quote = connection.ops.quote_name
    assignments = ", ".join(f"{quote(f.column)} = %s" for f in fields)
    pk = model._meta.pk
    sql = f"UPDATE {quote(model._meta.db_table)} SET {assignments} WHERE {quote(pk.column)} = %s"
    rows = [
        [f.get_db_prep_save(getattr(obj, f.attname), connection) for f in fields]
        + [pk.get_db_prep_value(obj.pk, connection)]
        for obj in objs
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)
