"""The outbox's ``(connector, state)`` index goes (issue 20).

Each queued mail wrote an entry into it (on SQLite a page of the commit's WAL, of
about 18), and each sent one removed it; it served only the connectors page's
counts per connector, which read the outbox's rows anyway (only mail not sent yet
is there), and a claim that read through it re-read the backlog
(``tests/test_outbox_plans.py``). Parking and release find their rows through
``maillog_outbox_due``, whose first column is the state.
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("wagtail_maillog", "0017_record_one_function"),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name="outboxitem",
            name="maillog_outbox_connector",
        ),
    ]
