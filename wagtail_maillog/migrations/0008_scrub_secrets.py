"""Bodies used to be stored by default, one-time links in them included: cut the
secrets out of the rows written before (see wagtail_maillog/redaction.py)."""

from django.db import migrations


def scrub(apps, schema_editor):
    from wagtail_maillog.redaction import scrub

    scrub(apps.get_model("wagtail_maillog", "Message"), apps.get_model("wagtail_maillog", "Event"))


class Migration(migrations.Migration):
    dependencies = [("wagtail_maillog", "0007_event_dedupe_constraint")]

    operations = [migrations.RunPython(scrub, migrations.RunPython.noop, elidable=True)]
