"""What each recipient of a batch received: the batch's merge field spelling on the
message, each recipient's merge values (see wagtail_maillog/merging.py).

Both columns are nullable without a default: PostgreSQL and MariaDB add them
without rewriting the tables, SQLite with a plain ALTER TABLE ADD COLUMN."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('wagtail_maillog', '0010_payloads_in_esp_key_order'),
    ]

    operations = [
        migrations.AddField(
            model_name='message',
            name='merge_field',
            field=models.CharField(blank=True, max_length=64, null=True, verbose_name='merge field'),
        ),
        migrations.AddField(
            model_name='recipient',
            name='merge_values',
            field=models.JSONField(blank=True, null=True, verbose_name='merge values'),
        ),
    ]
