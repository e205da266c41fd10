"""PostgreSQL: the one-event webhook's write as a function, so that its plan is kept.

PostgreSQL parses and plans each statement Django sends (Django does not prepare
statements, for the sake of connection poolers): for the one-event write, a
statement of four parts, that was most of its time. A PL/pgSQL function's
statements are planned once per database session, and kept with it whatever pooler
sits in between. ``wagtail_maillog.events`` calls it on connections that outlive a
request (``CONN_MAX_AGE``, Django's pool); a new connection for each request would
pay for the function's first call every time, and sends the statement instead.

The function does what that statement does (``events._postgresql_write_sql``):

1. ``chk``: lock the recipients the request read, where they still have the values
   it read (compare-and-set);
2. ``ins``: insert the event only if it locked them all, unless it is stored already;
3. ``rcp``, ``adr``: move the recipients and the addresses' ``last_event_at`` only
   if the event was inserted.

It returns how many events it inserted (0 or 1) and how many recipients it locked.
Its body is this migration's snapshot of the three tables: a later migration that
changes their columns replaces it (``tests/test_store_one_event_function.py``
compares its parameters with the models). Nothing on SQLite and MariaDB/MySQL.
"""

from django.db import migrations

FUNCTION = "wagtail_maillog_store_one_event"

CREATE = f"""
CREATE OR REPLACE FUNCTION {FUNCTION}(
    read_id bigint[], read_status varchar[], read_status_at timestamptz[],
    read_opened_at timestamptz[], read_reason text[],
    event_esp_name varchar, event_esp_message_id varchar, event_address varchar,
    event_event_type varchar, event_timestamp timestamptz, event_event_id varchar,
    event_dedupe_key varchar, event_description text, event_mta_response text,
    event_reject_reason varchar, event_click_url text, event_user_agent text,
    event_raw json, event_recipient_id bigint, event_received_at timestamptz,
    new_id bigint[], new_status varchar[], new_status_at timestamptz[],
    new_opened_at timestamptz[], new_reason text[],
    touched varchar[], touched_at timestamptz,
    OUT inserted bigint, OUT locked bigint
) LANGUAGE plpgsql
-- Its plan does not depend on the values: planned once, not at each call (a plan for
-- arrays of unknown length looks dearer to PostgreSQL than one for the given arrays).
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    WITH chk AS (
        SELECT r.id FROM wagtail_maillog_recipient AS r
        JOIN unnest(read_id, read_status, read_status_at, read_opened_at, read_reason)
            AS o(id, status, status_at, opened_at, reason)
        ON r.id = o.id
            AND r.status IS NOT DISTINCT FROM o.status
            AND r.status_at IS NOT DISTINCT FROM o.status_at
            AND r.opened_at IS NOT DISTINCT FROM o.opened_at
            AND r.reason IS NOT DISTINCT FROM o.reason
        FOR NO KEY UPDATE OF r
    ), ins AS (
        INSERT INTO wagtail_maillog_event (
            esp_name, esp_message_id, address, event_type, "timestamp", event_id,
            dedupe_key, description, mta_response, reject_reason, click_url,
            user_agent, raw, recipient_id, received_at
        )
        SELECT
            event_esp_name, event_esp_message_id, event_address, event_event_type,
            event_timestamp, event_event_id, event_dedupe_key, event_description,
            event_mta_response, event_reject_reason, event_click_url, event_user_agent,
            event_raw, event_recipient_id, event_received_at
        WHERE (SELECT COUNT(*) FROM chk) = cardinality(read_id)
        ON CONFLICT DO NOTHING
        RETURNING 1
    ), rcp AS (
        UPDATE wagtail_maillog_recipient AS r
        SET status = v.status, status_at = v.status_at, opened_at = v.opened_at,
            reason = v.reason
        FROM ins, unnest(new_id, new_status, new_status_at, new_opened_at, new_reason)
            AS v(id, status, status_at, opened_at, reason)
        WHERE r.id = v.id
    ), adr AS (
        UPDATE wagtail_maillog_address SET last_event_at = touched_at
        FROM ins WHERE address = ANY(touched)
    )
    SELECT (SELECT COUNT(*) FROM ins), (SELECT COUNT(*) FROM chk) INTO inserted, locked;
END
$$
"""


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP FUNCTION IF EXISTS {FUNCTION}")


class Migration(migrations.Migration):
    dependencies = [("wagtail_maillog", "0015_message_partial_indexes")]

    operations = [migrations.RunPython(create, drop, elidable=False)]
