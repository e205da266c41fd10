"""Set-based writes whose query count does not grow with the number of rows.

Django's ``bulk_create``/``bulk_update`` split their work by the database's
parameter limit (999 on SQLite before Django 6), so 1,000 events became ~25
statements. ``executemany`` sends one statement with many parameter rows: one
round trip on SQLite, a multi-row insert on MySQL. On PostgreSQL each column
goes as one array instead (``INSERT ... SELECT * FROM UNNEST(...)`` and
``UPDATE ... FROM UNNEST(...)``, as Django's own ``bulk_create`` does since
5.2): one statement, where psycopg's ``executemany`` runs one per row.

The parameter rows are built straight from plain values, without model
instances: each field is prepared as ``Field.get_db_prep_save`` would, but the
values that need no preparation (a ``str`` for a text column, an ``int`` for
a key, an aware ``datetime``, which only the backend adapts) skip the field's
generic path. At a thousand rows per webhook POST that path was most of the
time of the whole request.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from functools import partial
from typing import Any

from django.db import connections, models, router
from django.db.models.constants import OnConflict
from django.db.models.sql.subqueries import InsertQuery
from django.utils import timezone

Converter = Callable[[Any], Any]

_TEXT = {"CharField", "TextField", "EmailField", "SlugField", "URLField"}
_INTEGER = {
    "AutoField",
    "BigAutoField",
    "SmallAutoField",
    "IntegerField",
    "BigIntegerField",
    "SmallIntegerField",
    "PositiveIntegerField",
    "PositiveBigIntegerField",
    "PositiveSmallIntegerField",
}


def converter(field: models.Field, connection: Any) -> Converter:
    """A function giving what ``field.get_db_prep_save(value, connection)`` gives."""
    prepare = partial(field.get_db_prep_save, connection=connection)
    kind = (field.target_field if field.is_relation else field).get_internal_type()
    # Shortcuts only where the field hands such a value on as it is (PostgreSQL
    # wraps some integers in typed adapters, for one).
    if kind in _TEXT and type(prepare("x")) is str:
        return lambda v: v if type(v) is str else prepare(v)
    if kind in _INTEGER and type(prepare(1)) is int:
        return lambda v: v if v is None or type(v) is int else prepare(v)
    if kind == "DateTimeField" and not field.is_relation:
        return _datetime_converter(connection.ops.adapt_datetimefield_value, prepare)
    return prepare


def _datetime_converter(adapt: Converter, prepare: Converter) -> Converter:
    """Aware datetimes go straight to the backend; a value repeated (a batch's
    ``received_at``) is converted once."""
    last: list[Any] = [None, None]

    def convert(value: Any) -> Any:
        if value is last[0] and value is not None:
            return last[1]
        if type(value) is datetime and timezone.is_aware(value):
            out = adapt(value)
        else:
            out = prepare(value)
        last[:] = [value, out]
        return out

    return convert


def _concrete(model: type[models.Model], names: Sequence[str] | None) -> list[models.Field]:
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    if names is not None:
        by_name = {f.name: f for f in fields} | {f.attname: f for f in fields}
        fields = [by_name[name] for name in names]
    return fields


def _unnest_types(fields: Sequence[models.Field], connection: Any) -> list[str] | None:
    """PostgreSQL array types to pass each column as one array, or None where that
    does not fit (the conditions of Django's own UNNEST bulk insert)."""
    if connection.vendor != "postgresql":
        return None
    types = []
    for field in fields:
        base = field.target_field if field.is_relation else field
        if (
            hasattr(field, "get_placeholder_sql")
            or hasattr(field, "get_placeholder")
            or base.get_internal_type() not in connection.data_types
        ):
            return None
        types.append(field.db_type(connection).split("(")[0])  # varchar, not varchar(64)
    return types


def _columns(rows: list[list[Any]]) -> list[list[Any]]:
    return [list(column) for column in zip(*rows, strict=True)]


def _insert_sql(model: type[models.Model], fields: list[models.Field], connection: Any) -> str:
    """The single-row INSERT (conflicts ignored) that ``executemany`` repeats."""
    query = InsertQuery(model, on_conflict=OnConflict.IGNORE)
    query.insert_values(fields, [model()])
    sql, _params = query.get_compiler(connection=connection).as_sql()[0]
    return sql


def insert_rows(
    model: type[models.Model], names: Sequence[str], rows: Iterable[Sequence[Any]]
) -> None:
    """INSERT plain value rows (in the order of ``names``) in one statement.

    Fields not named get their default (called per row, as a new instance
    would); rows that clash with a unique constraint are skipped.
    """
    connection = connections[router.db_for_write(model)]
    named = _concrete(model, names)
    others = [f for f in _concrete(model, None) if f not in named]
    fields = named + others
    convert = [converter(f, connection) for f in fields]
    params = [
        [c(v) for c, v in zip(convert, [*row, *(f.get_default() for f in others)], strict=True)]
        for row in rows
    ]
    if not params:
        return
    types = _unnest_types(fields, connection)
    with connection.cursor() as cursor:
        if types is None:
            cursor.executemany(_insert_sql(model, fields, connection), params)
            return
        # PostgreSQL: one statement, one array per column (executemany would run,
        # and plan, one INSERT per row).
        quote = connection.ops.quote_name
        arrays = ", ".join(f"(%s)::{t}[]" for t in types)
        cursor.execute(
            f"INSERT INTO {quote(model._meta.db_table)} "
            f"({', '.join(quote(f.column) for f in fields)}) "
            f"SELECT * FROM UNNEST({arrays}) ON CONFLICT DO NOTHING",
            _columns(params),
        )


def insert_ignoring_conflicts(objs: Sequence[models.Model]) -> None:
    """INSERT every object in one statement; rows that clash are skipped."""
    if not objs:
        return
    model = type(objs[0])
    fields = _concrete(model, None)
    insert_rows(
        model,
        [f.name for f in fields],
        ([f.pre_save(obj, True) for f in fields] for obj in objs),
    )


def update_fields(
    objs: Sequence[Any], names: Sequence[str], model: type[models.Model] | None = None
) -> None:
    """UPDATE the named fields of every object (by pk) in one statement.

    ``objs`` are instances of ``model`` (default: the type of the first), or
    anything with ``pk`` and the fields' attributes (``recipient_id`` for a
    key named ``recipient``).
    """
    if not objs:
        return
    model = model or type(objs[0])
    connection = connections[router.db_for_write(model)]
    fields = _concrete(model, names)
    pk = model._meta.pk
    convert = [(f.attname, converter(f, connection)) for f in fields]
    convert_pk = converter(pk, connection)
    rows = [
        [c(getattr(obj, attname)) for attname, c in convert] + [convert_pk(obj.pk)] for obj in objs
    ]
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)
    types = _unnest_types([*fields, pk], connection)
    with connection.cursor() as cursor:
        if types is None:
            assignments = ", ".join(f"{quote(f.column)} = %s" for f in fields)
            cursor.executemany(
                f"UPDATE {table} SET {assignments} WHERE {quote(pk.column)} = %s", rows
            )
            return
        # PostgreSQL: one UPDATE ... FROM UNNEST, one array per column.
        aliases = [f"v{n}" for n in range(len(fields))]
        assignments = ", ".join(
            f"{quote(f.column)} = v.{alias}" for f, alias in zip(fields, aliases, strict=True)
        )
        arrays = ", ".join(f"(%s)::{t}[]" for t in types)
        cursor.execute(
            f"UPDATE {table} SET {assignments} FROM UNNEST({arrays}) "
            f"AS v({', '.join(aliases)}, pk) WHERE {table}.{quote(pk.column)} = v.pk",
            _columns(rows),
        )
