"""A mailing says how it ended: "sent" (when the last recipient was handed over),
"cancelled" (when and by whom)."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("wagtail_maillog", "0008_scrub_secrets"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="mailing",
            name="cancelled_at",
            field=models.DateTimeField(blank=True, null=True, verbose_name="cancelled"),
        ),
        migrations.AddField(
            model_name="mailing",
            name="cancelled_by",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
                verbose_name="cancelled by",
            ),
        ),
        migrations.AddField(
            model_name="mailing",
            name="finished_at",
            field=models.DateTimeField(
                blank=True, null=True, verbose_name="last recipient handed over"
            ),
        ),
        migrations.AlterField(
            model_name="mailing",
            name="state",
            field=models.CharField(
                choices=[
                    ("draft", "Draft"),
                    ("scheduled", "Scheduled"),
                    ("starting", "Starting"),
                    ("queuing", "Queuing recipients"),
                    ("queued", "Sending"),
                    ("sent", "Sent"),
                    ("cancelled", "Cancelled"),
                    ("failed", "Failed"),
                ],
                default="draft",
                max_length=16,
                verbose_name="state",
            ),
        ),
    ]
