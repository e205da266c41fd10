"""Set-based writes whose query count does not grow with the number of rows.

Django's ``bulk_create``/``bulk_update`` split their work by the database's
parameter limit (999 on SQLite before Django 6), so 1,000 events became ~25
statements. ``executemany`` sends one statement with many parameter rows: one
round trip on SQLite, multi-row inserts of up to 1 MB each on MySQL/MariaDB
(mysqlclient's ``executemany``, raised from its 64 KB, see :func:`_statements_of`;
an UPDATE there is joined to its rows instead,
:func:`_update_joined`). On PostgreSQL each column
goes as one array instead (``INSERT ... SELECT * FROM UNNEST(...)`` and
``UPDATE ... FROM UNNEST(...)``, as Django's own ``bulk_create`` does since
5.2): one statement, where psycopg's ``executemany`` runs one per row.
With psycopg 3 those arrays are bound server-side, in binary (see
:func:`array_cursor`): Django's default client-side binding quoted every
element as text in Python, a third of a webhook POST.

The parameter rows are built straight from plain values, without model
instances: each field is prepared as ``Field.get_db_prep_save`` would, but the
values that need no preparation (a ``str`` for a text column, an ``int`` for
a key, an aware ``datetime``, which only the backend adapts) skip the field's
generic path. At a thousand rows per webhook POST that path was most of the
time of the whole request.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from operator import attrgetter
from typing import Any
from weakref import WeakKeyDictionary

from django.db import NotSupportedError, connections, models, router, transaction
from django.db.models import F, QuerySet
from django.db.models.constants import OnConflict
from django.db.models.expressions import RawSQL
from django.db.models.lookups import Lookup
from django.db.models.sql.subqueries import InsertQuery
from django.utils import timezone

try:
    import psycopg
    import psycopg.types.json
except ImportError:  # psycopg 2, or no PostgreSQL
    psycopg = None

Converter = Callable[[Any], Any]

#: MySQL/MariaDB: the size of one multi-row INSERT that mysqlclient's
#: ``executemany`` builds (its default, 64 KB, split a 1,000-event webhook
#: batch into ~8 statements). Well under the servers' default
#: ``max_allowed_packet`` (16 MB on MariaDB, 64 MB on MySQL 8).
MYSQL_STATEMENT_BYTES = 1024 * 1024

#: Elsewhere than PostgreSQL, lookups of more values than this are split
#: (SQLite caps the parameters of a query).
CHUNK = 900

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


#: Per connection (one per thread): what :func:`column_converter`, :func:`insert_row`
#: and :func:`insert_linked` built for it, kept for the next call.
_compiled: WeakKeyDictionary[Any, dict[tuple[Any, ...], Any]] = WeakKeyDictionary()


def converter(field: models.Field, connection: Any) -> Converter:
    """A function giving what ``field.get_db_prep_save(value, connection)`` gives."""
    return _converters(field, connection)[0]


def _converters(field: models.Field, connection: Any) -> tuple[Converter, frozenset[type]]:
    """:func:`converter`, and the exact types of the values it hands on as they are."""
    prepare = partial(field.get_db_prep_save, connection=connection)
    kind = (field.target_field if field.is_relation else field).get_internal_type()
    # Shortcuts only where the field hands such a value on as it is (PostgreSQL
    # wraps some integers in typed adapters, for one).
    if kind in _TEXT and type(prepare("x")) is str:
        # Any str as it is (choices are str subclasses): what ``to_python`` does.
        kept = {str, type(None)} if prepare(None) is None else {str}
        return (lambda v: v if isinstance(v, str) else prepare(v)), frozenset(kept)
    if kind in _INTEGER and type(prepare(1)) is int:
        return (lambda v: v if v is None or type(v) is int else prepare(v)), frozenset(
            {int, type(None)}
        )
    if kind == "DateTimeField" and not field.is_relation:
        adapt = connection.ops.adapt_datetimefield_value
        # One memory per connection: a mail's rows carry the same ``now`` five times.
        compiled = _compiled.setdefault(connections[connection.alias], {})
        last = compiled.setdefault("datetime", [None, None])
        return _datetime_converter(adapt, prepare, last), frozenset()
    if kind == "JSONField" and not field.is_relation:
        return _json_converter(prepare), frozenset()
    return prepare, frozenset()


def column_converter(field: models.Field, connection: Any) -> Callable[[list[Any]], list[Any]]:
    """Converts a column of values as :func:`converter` converts each one.

    A column whose values are all of types the field hands on as they are (all
    ``str`` for a text column) is kept whole: no call per value. Built once per
    connection and field: a one-event webhook updates one row.
    """
    compiled = _compiled.setdefault(connections[connection.alias], {})  # not django.db's proxy
    key = ("column", field)
    if key not in compiled:
        compiled[key] = _column_converter(field, connection)
    return compiled[key]


def converters(fields: Sequence[models.Field], connection: Any) -> tuple[Converter, ...]:
    """:func:`converter` of each field, built once per connection (per thread: a
    converter may remember its last value) and fields."""
    compiled = _compiled.setdefault(connections[connection.alias], {})  # not django.db's proxy
    key = ("converters", *fields)
    if key not in compiled:
        compiled[key] = tuple(converter(field, connection) for field in fields)
    return compiled[key]


def _column_converter(field: models.Field, connection: Any) -> Callable[[list[Any]], list[Any]]:
    convert, kept = _converters(field, connection)

    def convert_column(values: list[Any]) -> list[Any]:
        if kept and kept.issuperset(map(type, values)):
            return values
        return list(map(convert, values))

    return convert_column


class JSONText(str):
    """A value for a ``JSONField``, already encoded as JSON text.

    Events are encoded once anyway, to hold them to ``MAX_RAW_PAYLOAD``; the
    converter writes that text instead of encoding the value a second time.
    """


def _json_converter(prepare: Converter) -> Converter:
    """:class:`JSONText` as it is where the backend takes JSON as text (SQLite,
    MySQL), as psycopg 3's ``Jsonb``, or through a field that takes it as it is (a
    ``json`` column's); an empty list or dict as prepared once (most of a mail's
    JSON columns); any other value through the field."""
    sample = prepare({})
    if type(sample) is str:
        as_is: Converter = str
    elif psycopg is not None and isinstance(sample, psycopg.types.json.Jsonb):
        as_is = partial(psycopg.types.json.Jsonb, dumps=str)
    elif psycopg is not None and isinstance(sample, psycopg.types.json.Json):
        as_is = prepare  # a ``json`` column's field takes JSONText as it is (PayloadJSONField)
    else:
        as_is = lambda text: prepare(json.loads(text))  # noqa: E731
    empty = {dict: sample, list: prepare([])}

    def convert(value: Any) -> Any:
        kind = type(value)
        if kind is JSONText:
            return as_is(value)
        if kind in empty and not value:
            return empty[kind]
        return prepare(value)

    return convert


def _datetime_converter(adapt: Converter, prepare: Converter, last: list[Any]) -> Converter:
    """Aware datetimes go straight to the backend; the last one adapted (``last``,
    shared by the converters of a connection: a batch's ``received_at``, a mail's
    ``now``) is adapted once."""

    def convert(value: Any) -> Any:
        if value is None:
            return None
        if value is last[0]:
            return last[1]
        if type(value) is datetime and timezone.is_aware(value):
            out = adapt(value)
            last[:] = [value, out]
            return out
        return prepare(value)

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
        types.append(column_type(field, connection))
    return types


def column_type(field: models.Field, connection: Any) -> str:
    """``field``'s column type (its target's, for a foreign key), without its length:
    varchar, not varchar(64)."""
    base = field.target_field if field.is_relation else field
    return base.db_type(connection).split("(")[0]


if psycopg is not None:

    class _ServerBindingCursor(psycopg.Cursor):
        """A psycopg 3 cursor binding parameters server-side, never preparing: named
        prepared statements break transaction-pooling proxies (PgBouncer before
        1.21), which Django's default client-side binding works with."""

        def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
            return super().execute(query, params, **{**kwargs, "prepare": False})


@contextmanager
def bound_cursor(connection: Any) -> Iterator[Any]:
    """A cursor that sends the parameters apart from the SQL, where it can.

    With psycopg 3, a server-side binding cursor on the same connection (so in
    the same transaction), never preparing: Django's client-side binding quotes
    every value into the SQL in Python: a column as an array, element by element;
    queueing a mail's 40 values (about 0.09 ms of CPU a ``send()`` on PostgreSQL).
    Not for every statement: the one-event webhook's write statement measured
    slower bound server-side (4.3–4.5 ms a request against 3.8–4.2). It is
    wrapped as Django wraps its own, so queries are logged and counted, execute
    wrappers run and errors become Django's. Elsewhere (psycopg 2, other
    databases), Django's cursor.
    """
    connection.ensure_connection()
    if not _binds_server_side(connection):
        with connection.cursor() as cursor:
            yield cursor
        return
    connection.validate_thread_sharing()
    with connection.wrap_database_errors:
        raw = _ServerBindingCursor(connection.connection)
    wrap = connection.make_debug_cursor if connection.queries_logged else connection.make_cursor
    with wrap(raw) as cursor:
        yield cursor


@contextmanager
def array_cursor(connection: Any) -> Iterator[tuple[Any, str]]:
    """A cursor for a statement taking one array per column (:func:`bound_cursor`),
    and the placeholder for such an array: binary (``%b``) where the parameters go
    apart from the SQL."""
    with bound_cursor(connection) as cursor:
        yield cursor, "%b" if _binds_server_side(connection) else "%s"


def _binds_server_side(connection: Any) -> bool:
    """Whether :func:`bound_cursor` binds server-side here (a psycopg 3 connection)."""
    return psycopg is not None and isinstance(connection.connection, psycopg.Connection)


def _statements_of(cursor: Any, size: int) -> None:
    """Let mysqlclient's cursor, under Django's wrappers, build INSERTs of ``size`` bytes."""
    raw = cursor
    while "cursor" in getattr(raw, "__dict__", {}):  # Django's wrappers keep it there
        raw = raw.__dict__["cursor"]
    if hasattr(type(raw), "max_stmt_length"):  # MySQLdb.cursors.BaseCursor
        raw.max_stmt_length = size


def _insert_sql(model: type[models.Model], fields: list[models.Field], connection: Any) -> str:
    """The single-row INSERT (conflicts ignored) that ``executemany`` repeats."""
    query = InsertQuery(model, on_conflict=OnConflict.IGNORE)
    query.insert_values(fields, [model()])
    sql, _params = query.get_compiler(connection=connection).as_sql()[0]
    return sql


def prepared_columns(
    model: type[models.Model],
    names: Sequence[str],
    rows: Sequence[Sequence[Any]],
    connection: Any,
    leave: Sequence[str] = (),
) -> tuple[list[models.Field], list[list[Any]]]:
    """Every column of ``rows`` of ``model`` (values in the order of ``names``), as one
    list of prepared values per field: the named fields, then the others (but those
    in ``leave``) with their default, called per row as a new instance would."""
    named = _concrete(model, names)
    others = [f for f in _concrete(model, None) if f not in named and f.name not in leave]
    given = [list(column) for column in zip(*rows, strict=True)] if named else []
    if len(given) != len(named):
        raise ValueError(f"rows of {len(given)} values for {len(named)} fields")
    defaults = [[f.get_default() for _ in rows] for f in others]
    fields = named + others
    columns = [
        column_converter(field, connection)(values)
        for field, values in zip(fields, [*given, *defaults], strict=True)
    ]
    return fields, columns


def insert_rows(
    model: type[models.Model], names: Sequence[str], rows: Iterable[Sequence[Any]]
) -> None:
    """INSERT plain value rows (in the order of ``names``) in one statement.

    Fields not named get their default (called per row, as a new instance
    would); rows that clash with a unique constraint are skipped.
    """
    connection = connections[router.db_for_write(model)]
    rows = list(rows)
    if not rows:
        return
    fields, columns = prepared_columns(model, names, rows, connection)
    types = _unnest_types(fields, connection)
    if types is None:
        with connection.cursor() as cursor:
            if connection.vendor == "mysql":
                _statements_of(cursor, MYSQL_STATEMENT_BYTES)
            cursor.executemany(
                _insert_sql(model, fields, connection), list(zip(*columns, strict=True))
            )
        return
    # PostgreSQL: one statement, one array per column (executemany would run,
    # and plan, one INSERT per row).
    quote = connection.ops.quote_name
    with array_cursor(connection) as (cursor, placeholder):
        arrays = ", ".join(f"({placeholder})::{t}[]" for t in types)
        cursor.execute(
            f"INSERT INTO {quote(model._meta.db_table)} "
            f"({', '.join(quote(f.column) for f in fields)}) "
            f"SELECT * FROM UNNEST({arrays}) ON CONFLICT DO NOTHING",
            columns,
        )


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: one per connection
class _Shape:
    """The columns of a one-row INSERT of a model and how each value is prepared."""

    table: str
    fields: tuple[models.Field, ...]
    columns: str  # quoted, comma-separated
    placeholders: tuple[str, ...]  # "%s", or a RawSQL value's "(...)"
    converters: tuple[Converter, ...]  # of the fields named by the caller, in order
    raw: bool  # some named value is a RawSQL
    #: The fields not named, last: each a prepared value (a constant default,
    #: prepared once per shape) or, for a callable default, its field and converter.
    defaults: tuple[Any, ...]

    def params(self, values: Iterable[Any]) -> list[Any]:
        if self.raw:
            params: list[Any] = []
            for convert, value in zip(self.converters, values, strict=True):
                if isinstance(value, RawSQL):
                    params.extend(value.params)
                else:
                    params.append(convert(value))
        else:
            params = [convert(v) for convert, v in zip(self.converters, values, strict=True)]
        for default in self.defaults:
            if type(default) is _Called:
                default = default.convert(default.field.get_default())
            params.append(default)
        return params


@dataclass(frozen=True)
class _Called:
    """A default called for each row (``timezone.now``, ``uuid4``)."""

    field: models.Field
    convert: Converter


def _default(field: models.Field, convert: Converter) -> Any:
    """What :attr:`_Shape.defaults` holds for ``field``."""
    default = field.default if field.has_default() else None
    if callable(default) and default not in (dict, list):  # those give an empty JSON value
        return _Called(field, convert)
    if field.has_db_default():
        return _Called(field, convert)
    return convert(field.get_default())


def _shape(model: type[models.Model], values: dict[str, Any], connection: Any) -> _Shape:
    names = tuple(values)
    fragments = tuple(v.sql if isinstance(v, RawSQL) else None for v in values.values())
    key = ("shape", model, names, fragments)
    compiled = _compiled.setdefault(connection, {})
    if key not in compiled:
        named = _concrete(model, names)
        others = [f for f in _concrete(model, None) if f not in named]
        fields = named + others
        quote = connection.ops.quote_name
        convert = converters(fields, connection)
        compiled[key] = _Shape(
            table=quote(model._meta.db_table),
            fields=tuple(fields),
            columns=", ".join(quote(f.column) for f in fields),
            placeholders=tuple(f"({sql})" if sql else "%s" for sql in fragments)
            + ("%s",) * len(others),
            converters=convert[: len(named)],
            raw=any(fragments),
            defaults=tuple(
                _default(field, c) for field, c in zip(others, convert[len(named) :], strict=True)
            ),
        )
    return compiled[key]


def prepared_row(
    model: type[models.Model], values: dict[str, Any], connection: Any
) -> tuple[Any, list[Any]]:
    """One row of plain values (``{field name: value}``, no RawSQL), prepared for
    ``connection`` as :func:`insert_row` writes it: its shape (``fields``: the named
    ones first, then the others; one object per connection and names, to compare by
    identity) and its values, the others' defaults included."""
    shape = _shape(model, values, connection)
    return shape, shape.params(values.values())


def _returning(model: type[models.Model], names: Sequence[str], connection: Any) -> str:
    by_name = {f.name: f for f in model._meta.concrete_fields} | {"pk": model._meta.pk}
    # Django 6.0 renamed ``return_insert_columns``.
    columns = getattr(connection.ops, "returning_columns", None)
    columns = columns or connection.ops.return_insert_columns
    clause, _params = columns([by_name[n] for n in names])
    return " " + clause


def insert_row(
    model: type[models.Model], values: dict[str, Any], returning: Sequence[str] = ("pk",)
) -> tuple[Any, ...]:
    """INSERT one row of plain values (``{field name: value}``) and return the
    ``returning`` columns' values as the database wrote them.

    What ``Model.objects.create`` does, without a model instance and without
    compiling the INSERT for each call: the SQL is built once per connection
    and shape, as one mail queued per ``send()`` needs. A value may be a
    :class:`~django.db.models.expressions.RawSQL` the INSERT evaluates. Fields
    not named get their default. No ``pre_save``/``post_save`` signals. Where
    the database cannot return columns from an INSERT (MySQL), only the primary
    key is returned (``returning`` must then be ``("pk",)``).
    """
    connection = connections[router.db_for_write(model)]
    shape = _shape(model, values, connection)
    returns = bool(returning) and connection.features.can_return_columns_from_insert
    key = ("insert", shape, tuple(returning) if returns else ())
    compiled = _compiled[connection]
    if key not in compiled:
        sql = (
            f"INSERT INTO {shape.table} ({shape.columns}) VALUES ({', '.join(shape.placeholders)})"
        )
        compiled[key] = sql + (_returning(model, returning, connection) if returns else "")
    with connection.cursor() as cursor:
        cursor.execute(compiled[key], shape.params(values.values()))
        if returns:
            return tuple(cursor.fetchone())
        if not returning:
            return ()
        if tuple(returning) != ("pk",):
            raise NotSupportedError(f"{connection.vendor} returns no columns from an INSERT")
        table, pk = model._meta.db_table, model._meta.pk.column
        return (connection.ops.last_insert_id(cursor, table, pk),)


@dataclass(frozen=True)
class Linked:
    """Rows of ``model`` that point (by ``key``, a foreign key) at the row inserted
    with them by :func:`insert_linked`; every row names the same fields."""

    model: type[models.Model]
    key: str
    rows: Sequence[dict[str, Any]]


def insert_linked(model: type[models.Model], values: dict[str, Any], *linked: Linked) -> int:
    """INSERT one row of ``model`` and the rows that point at it; its pk.

    PostgreSQL, where each link has one row (a mail to one recipient, the
    commonest): one statement (data-modifying CTEs), so one round trip where
    there were one per table. Otherwise one INSERT per table, in a transaction
    (the caller's, if it has one): many rows go as arrays (:func:`insert_rows`),
    so a mailing's batch message costs the same statements for any number of
    recipients.
    """
    connection = connections[router.db_for_write(model)]
    if connection.vendor != "postgresql" or any(len(link.rows) > 1 for link in linked):
        with transaction.atomic(using=connection.alias, savepoint=False):
            [pk] = insert_row(model, values)
            for link in linked:
                rows = [{link.key: pk, **row} for row in link.rows]
                if len(rows) == 1:
                    insert_row(link.model, rows[0], returning=())
                elif rows:
                    insert_rows(link.model, list(rows[0]), (list(row.values()) for row in rows))
        return pk
    shape = _shape(model, values, connection)
    pk_column = connection.ops.quote_name(model._meta.pk.column)
    parent = RawSQL(f"SELECT {pk_column} FROM p", ())
    params = shape.params(values.values())
    children = []
    for link in linked:
        for row in link.rows:  # one at most
            children.append(_shape(link.model, {link.key: parent, **row}, connection))
            params += children[-1].params([parent, *row.values()])
    key = ("linked", shape, *children)
    compiled = _compiled[connection]
    if key not in compiled:
        compiled[key] = (
            ",\n".join(
                [
                    f"WITH p AS (INSERT INTO {shape.table} ({shape.columns}) "
                    f"VALUES ({', '.join(shape.placeholders)}) RETURNING {pk_column})",
                    *(
                        f"c{number} AS (INSERT INTO {child.table} ({child.columns}) "
                        f"VALUES ({', '.join(child.placeholders)}))"
                        for number, child in enumerate(children)
                    ),
                ]
            )
            + f"\nSELECT {pk_column} FROM p"
        )
    with bound_cursor(connection) as cursor:
        cursor.execute(compiled[key], params)
        return cursor.fetchone()[0]


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
    if len(objs) == 1:  # one event's recipient: a plain UPDATE, built once
        sql, prepared = _row_update(model, tuple(names), connection)
        params = [convert([getattr(objs[0], attname)])[0] for convert, attname in prepared]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
        return
    fields = _concrete(model, names)
    pk = model._meta.pk
    columns = [
        column_converter(field, connection)(list(map(attrgetter(attname), objs)))
        for field, attname in [*((f, f.attname) for f in fields), (pk, "pk")]
    ]
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)
    types = _unnest_types([*fields, pk], connection)
    if connection.vendor == "mysql":
        _update_joined(
            connection, table, [quote(f.column) for f in fields], quote(pk.column), columns
        )
        return
    if types is None:
        assignments = ", ".join(f"{quote(f.column)} = %s" for f in fields)
        with connection.cursor() as cursor:
            cursor.executemany(
                f"UPDATE {table} SET {assignments} WHERE {quote(pk.column)} = %s",
                list(zip(*columns, strict=True)),
            )
        return
    # PostgreSQL: one UPDATE ... FROM UNNEST, one array per column.
    aliases = [f"v{n}" for n in range(len(fields))]
    assignments = ", ".join(
        f"{quote(f.column)} = v.{alias}" for f, alias in zip(fields, aliases, strict=True)
    )
    with array_cursor(connection) as (cursor, placeholder):
        arrays = ", ".join(f"({placeholder})::{t}[]" for t in types)
        cursor.execute(
            f"UPDATE {table} SET {assignments} FROM UNNEST({arrays}) "
            f"AS v({', '.join(aliases)}, pk) WHERE {table}.{quote(pk.column)} = v.pk",
            columns,
        )


def _row_update(
    model: type[models.Model], names: tuple[str, ...], connection: Any
) -> tuple[str, list[tuple[Callable[[list[Any]], list[Any]], str]]]:
    """The UPDATE of one row's named fields by pk, and each parameter's converter and
    attribute (the pk last)."""
    compiled = _compiled.setdefault(connection, {})
    key = ("update", model, names)
    if key not in compiled:
        fields, pk = _concrete(model, names), model._meta.pk
        quote = connection.ops.quote_name
        assignments = ", ".join(f"{quote(f.column)} = %s" for f in fields)
        compiled[key] = (
            f"UPDATE {quote(model._meta.db_table)} SET {assignments} WHERE {quote(pk.column)} = %s",
            [(column_converter(f, connection), f.attname) for f in fields]
            + [(column_converter(pk, connection), "pk")],
        )
    return compiled[key]


def _update_joined(
    connection: Any, table: str, targets: list[str], pk: str, columns: list[list[Any]]
) -> None:
    """MySQL/MariaDB: one UPDATE per :data:`CHUNK` rows, joined to the new values as a
    derived table (mysqlclient's ``executemany`` sends an UPDATE once per row)."""
    width = len(targets) + 1  # the values, then the pk
    first = "SELECT " + ", ".join(f"%s AS v{n}" for n in range(width))
    other = " UNION ALL SELECT " + ", ".join(["%s"] * width)
    assignments = ", ".join(f"{table}.{column} = v.v{n}" for n, column in enumerate(targets))
    rows = list(zip(*columns, strict=True))
    with connection.cursor() as cursor:
        for start in range(0, len(rows), CHUNK):
            part = rows[start : start + CHUNK]
            cursor.execute(
                f"UPDATE {table} JOIN ({first}{other * (len(part) - 1)}) AS v "
                f"ON {table}.{pk} = v.v{width - 1} SET {assignments}",
                [value for row in part for value in row],
            )


class AnyOf(Lookup):
    """``field = ANY(%s)``: any number of values as one array parameter (PostgreSQL).

    ``field__in`` takes a parameter per value, which a client-side binding
    cursor quotes one by one in Python; used as an expression, never registered:
    ``queryset.filter(AnyOf(F("name"), values))``.
    """

    lookup_name = "any_of"
    prepare_rhs = False  # a list, not one value of the field

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        lhs, lhs_params = self.process_lhs(compiler, connection)
        convert = converter(self.lhs.output_field, connection)
        return f"{lhs} = ANY(%s)", [*lhs_params, [convert(v) for v in self.rhs]]


def filter_in(queryset: QuerySet, name: str, values: Sequence[Any]) -> Iterator[QuerySet]:
    """``queryset`` narrowed to the rows whose field ``name`` is one of ``values``,
    as few querysets as the database allows: one on PostgreSQL (an array), else
    one per :data:`CHUNK` values."""
    if not values:
        return
    if connections[queryset.db].vendor == "postgresql":
        yield queryset.filter(AnyOf(F(name), list(values)))
        return
    for start in range(0, len(values), CHUNK):
        yield queryset.filter(**{f"{name}__in": values[start : start + CHUNK]})
