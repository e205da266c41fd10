from django.db import migrations, models


class Migration(migrations.Migration):
    """The events' dedupe key: unique by a named constraint instead of ``unique=True``,
    which on PostgreSQL also built an unused ``LIKE`` index that every insert kept up."""

    dependencies = [
        ("wagtail_maillog", "0006_mailing_queue_runs"),
    ]

    operations = [
        # The constraint first: the key is never without one.
        migrations.AddConstraint(
            model_name="event",
            constraint=models.UniqueConstraint(fields=("dedupe_key",), name="maillog_event_dedupe"),
        ),
        migrations.AlterField(
            model_name="event",
            name="dedupe_key",
            field=models.CharField(max_length=64),
        ),
    ]
