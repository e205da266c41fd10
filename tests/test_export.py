"""``manage.py maillog_export``: the log's stable interface for scripts."""

import csv
import io
import json
from datetime import timedelta

import pytest
from django.core.mail import EmailMessage
from django.core.management import CommandError, call_command
from django.utils import timezone

from tests.testapp.models import Invoice
from tests.utils import post_json, send_with_ids
from wagtail_maillog import label
from wagtail_maillog.models import Message, Recipient

pytestmark = pytest.mark.django_db


def export(*args: str) -> str:
    out = io.StringIO()
    call_command("maillog_export", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def log(client, webhook_auth):
    invoice = Invoice.objects.create(number="9")

    msg = EmailMessage("Invoice 9", "b", "a@example.com", ["payer@example.com"])
    label(msg, source="invoice", related=invoice)
    msg.send()
    newsletter = send_with_ids(["a@example.com", "b@example.com"], "pm-1", subject="News")
    Message.objects.filter(pk=newsletter.pk).update(source="newsletter")
    bounce = {
        "RecordType": "Bounce",
        "ID": 1,
        "Type": "HardBounce",
        "MessageID": "pm-1",
        "Email": "b@example.com",
        "BouncedAt": "2026-11-05T16:33:54Z",
    }
    post_json(client, "/anymail/postmark/tracking/", bounce, webhook_auth)
    return invoice


def test_jsonl_has_one_line_per_recipient_with_the_documented_keys(log):
    lines = [json.loads(line) for line in export().splitlines()]
    assert len(lines) == 3
    by_to = {line["to"]: line for line in lines}
    invoice_line = by_to["payer@example.com"]
    assert invoice_line["related"] == f"testapp.invoice:{log.pk}"
    assert invoice_line["source"] == "invoice"
    assert invoice_line["subject"] == "Invoice 9"
    assert invoice_line["esp_message_id"] == "0"
    bounced = by_to["b@example.com"]
    assert bounced["status"] == "bounced" and bounced["events"] == 1
    assert bounced["related"] is None
    assert bounced["message_id"] == Recipient.objects.get(address="b@example.com").message_id
    assert bounced["created_at"].startswith(str(timezone.now().year))
    for key in (
        "message_id",
        "esp_message_id",
        "created_at",
        "to",
        "subject",
        "status",
        "source",
        "related",
        "events",
    ):
        assert key in invoice_line


def test_filters(log):
    assert [json.loads(x)["to"] for x in export("--status", "bounced").splitlines()] == [
        "b@example.com"
    ]
    assert len(export("--source", "newsletter").splitlines()) == 2
    assert len(export("--source", "invoice,newsletter").splitlines()) == 3
    tomorrow = (timezone.now() + timedelta(days=1)).date().isoformat()
    assert export("--since", tomorrow) == ""
    assert len(export("--until", tomorrow).splitlines()) == 3


def test_csv(log):
    reader = csv.DictReader(io.StringIO(export("--format", "csv")))
    rows = list(reader)
    assert len(rows) == 3
    assert {r["status"] for r in rows} >= {"bounced"}
    assert "related" in reader.fieldnames


def test_bad_arguments_give_a_clear_error(log):
    with pytest.raises(CommandError, match="Unknown status"):
        export("--status", "lost")
    with pytest.raises(CommandError, match="Not an ISO date"):
        export("--since", "yesterday")
