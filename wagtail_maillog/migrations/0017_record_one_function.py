"""PostgreSQL: recording one message (and queueing it) as a function, so that its plan is kept.

Queueing a mail through the outbox writes its message, its recipients and its
outbox row. Sent as one statement, PostgreSQL parses and plans it for each mail:
about half of the server's time for a ``send()``. A PL/pgSQL function's statements
are planned at its first call in a database session and the plans kept for the
session, whatever pooler sits in between. ``wagtail_maillog.recording`` calls it
once a session has shown that it records mail again and again (a worker, a
command, a mailing, a connection that outlives its request: the rule is
``wagtail_maillog.plans.repeats``); a one-off ``send()`` on a new connection sends
the statement.

The function takes each column of the message, each column of its recipients as
one array, and each column of its outbox row (all NULL: no outbox row, a mail sent
directly). ``o_switch_off``, when not NULL, is the outbox row's state if the
admin's switch of its connector is off (``outbox.connectors.queued_state``). It
returns the message's key.

The parameters are named after the columns and the call names them, so their order
does not matter. The body is this migration's snapshot of the four tables, built
from the migration's models (a custom user model's key type included): a later
migration that changes their columns replaces it
(``tests/test_record_one_function.py`` compares its parameters with the models).
Nothing on SQLite and MariaDB/MySQL.
"""

from django.db import migrations

FUNCTION = "wagtail_maillog_record_one"


def _type(field, connection) -> str:
    base = field.target_field if field.is_relation else field
    return base.db_type(connection).split("(")[0]


def _columns(model, skip: str = "") -> list:
    return [f for f in model._meta.concrete_fields if not f.primary_key and f.column != skip]


def create_sql(apps, connection) -> str:
    message = apps.get_model("wagtail_maillog", "Message")
    recipient = apps.get_model("wagtail_maillog", "Recipient")
    outbox = apps.get_model("wagtail_maillog", "OutboxItem")
    switch = apps.get_model("wagtail_maillog", "ConnectorState")
    quote = connection.ops.quote_name
    m = _columns(message)
    r_key = recipient._meta.get_field("message").column
    o_key = outbox._meta.get_field("message").column
    r = _columns(recipient, skip=r_key)
    o = _columns(outbox, skip=o_key)
    parameters = ",\n    ".join(
        [
            *(f"m_{f.column} {_type(f, connection)}" for f in m),
            *(f"r_{f.column} {_type(f, connection)}[]" for f in r),
            # No outbox row (a mail sent directly): these are left out.
            *(f"o_{f.column} {_type(f, connection)} DEFAULT NULL" for f in o),
            f"o_switch_off {_type(outbox._meta.get_field('state'), connection)} DEFAULT NULL",
        ]
    )

    def names(fields) -> str:
        return ", ".join(quote(f.column) for f in fields)

    def values(prefix: str, fields) -> str:
        return ", ".join(f"{prefix}{f.column}" for f in fields)

    state = (
        f"CASE WHEN o_switch_off IS NOT NULL AND EXISTS (SELECT 1 FROM "
        f"{quote(switch._meta.db_table)} WHERE {quote('name')} = o_connector "
        f"AND {quote('enabled')} = false) THEN o_switch_off ELSE o_state END"
    )
    outbox_values = ", ".join(state if f.column == "state" else f"o_{f.column}" for f in o)
    return f"""
CREATE OR REPLACE FUNCTION {FUNCTION}(
    {parameters}
) RETURNS bigint LANGUAGE plpgsql
-- Its plans do not depend on the values: planned once, not at each call.
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    new_message bigint;
BEGIN
    -- One statement, planned once, not three.
    WITH m AS (
        INSERT INTO {quote(message._meta.db_table)} ({names(m)})
        VALUES ({values("m_", m)})
        RETURNING {quote(message._meta.pk.column)} AS id
    ), r AS (
        INSERT INTO {quote(recipient._meta.db_table)} ({quote(r_key)}, {names(r)})
        SELECT m.id, u.* FROM m, unnest({values("r_", r)}) AS u
    ), o AS (
        INSERT INTO {quote(outbox._meta.db_table)} ({quote(o_key)}, {names(o)})
        SELECT m.id, {outbox_values} FROM m WHERE o_connector IS NOT NULL
    )
    SELECT id INTO new_message FROM m;
    RETURN new_message;
END
$$
"""


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(create_sql(apps, schema_editor.connection))


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP FUNCTION IF EXISTS {FUNCTION}")


class Migration(migrations.Migration):
    dependencies = [("wagtail_maillog", "0016_store_one_event_function")]

    operations = [migrations.RunPython(create, drop, elidable=False)]
