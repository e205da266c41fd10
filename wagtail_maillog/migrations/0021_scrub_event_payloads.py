"""The events' payloads used to be stored as the ESP sent them unless a clicked link
carried a token; some ESPs send a copy of the message back (Amazon SES's headers with
List-Unsubscribe, Postmark's bounce content): cut the tokens out of the rows written
before (see wagtail_maillog/redaction.py)."""

from django.db import migrations


def scrub(apps, schema_editor):
    from wagtail_maillog.redaction import scrub_events

    scrub_events(apps.get_model("wagtail_maillog", "Event"))


class Migration(migrations.Migration):
    dependencies = [("wagtail_maillog", "0020_event_espid_partial")]

    operations = [migrations.RunPython(scrub, migrations.RunPython.noop, elidable=True)]
