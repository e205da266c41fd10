"""ESP payloads read as the ESP sent them, on every database (issue 18: "Payloads as
indented JSON (keys in the ESP's order)").

PostgreSQL's ``jsonb`` reorders an object's keys (shortest first): ``Event.raw`` and
``SendAttempt.response`` are ``json`` columns there (wagtail_maillog/models/fields.py,
migration 0010), which keep the text as written.
"""

from __future__ import annotations

import html
import io
import json

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import connection

from tests.utils import client_for, post_json, send_with_ids, tracking_event
from wagtail_maillog.bulk import JSONText
from wagtail_maillog.events import ingest
from wagtail_maillog.models import Event, SendAttempt
from wagtail_maillog.models.fields import as_json_text

pytestmark = pytest.mark.django_db

POSTMARK = "/anymail/postmark/tracking/"

#: A Postmark delivery whose keys are in no order ``jsonb`` would give them
#: (it sorts by length, then bytes: "Tag" would come first, "Metadata" before "MessageID").
DELIVERY = {
    "RecordType": "Delivery",
    "MessageID": "pm-order",
    "Recipient": "ann@example.com",
    "DeliveredAt": "2026-11-05T16:33:50Z",
    "Details": "250 2.0.0 OK",
    "Metadata": {"zebra_stripes": "many", "yak": 2, "ant": {"wings": False, "id": 1}},
    "ServerID": 23,
    "Tag": "welcome",
}


def keys_in_order(value: object) -> list[list[str]]:
    """The keys of every object in ``value``, depth first, each object's in its order."""
    found: list[list[str]] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            found.append(list(node))
            for child in node.values():
                walk(child)

    walk(value)
    return found


def test_a_webhook_event_keeps_the_esps_key_order_and_the_page_shows_it(client, webhook_auth):
    message = send_with_ids(["ann@example.com"], "pm-order")
    assert post_json(client, POSTMARK, DELIVERY, webhook_auth).status_code == 200

    event = Event.objects.get()
    assert keys_in_order(event.raw) == keys_in_order(DELIVERY)
    assert list(Event.objects.values_list("raw", flat=True).get()) == list(DELIVERY)

    admin = User.objects.create_superuser("admin", "admin@example.com", "pw")
    page = client_for(admin).get(f"/admin/maillog/{message.pk}/").content.decode()
    shown = html.unescape(page.split("data-raw-payload>")[1].split("</pre>")[0])
    assert shown == json.dumps(DELIVERY, indent=2, ensure_ascii=False)


def test_the_esps_answer_to_a_send_keeps_its_order():
    message = send_with_ids(
        ["zoe.longname@example.com", "al@example.com"],
        {"zoe.longname@example.com": "id-z", "al@example.com": "id-a"},
    )
    response = SendAttempt.objects.get(message=message).response
    assert list(response) == ["zoe.longname@example.com", "al@example.com"]
    assert list(response["al@example.com"]) == ["message_id", "status"]


def test_text_jsonb_refuses_is_stored_as_u_fffd_on_postgresql():
    """``json`` takes ``"\\u0000"`` and lone surrogates, which ``jsonb`` refused: an event
    stored without the webhook's cleaning (a fetcher, anymail's signal) keeps the rest of
    its payload, with U+FFFD for those, and the page shows it."""
    message = send_with_ids(["ann@example.com"], "esp-1")
    payload = {"z": "nul\x00", "lone": "a\ud800b", "emoji": "\U0001f600", "text": "\\u0000"}
    ingest([(tracking_event(esp_event=payload), "Postmark")])

    raw = Event.objects.get().raw
    assert list(raw) == list(payload)
    assert (raw["emoji"], raw["text"]) == ("\U0001f600", "\\u0000")
    if connection.vendor == "postgresql":
        assert (raw["z"], raw["lone"]) == ("nul\ufffd", "a\ufffdb")
        with connection.cursor() as cursor:  # what migrating back to jsonb does
            cursor.execute("SELECT raw::jsonb FROM wagtail_maillog_event")
        admin = User.objects.create_superuser("admin", "admin@example.com", "pw")
        page = client_for(admin).get(f"/admin/maillog/{message.pk}/")
        assert page.status_code == 200 and "a\ufffdb" in page.content.decode()


def test_json_text_is_cleaned_only_where_jsonb_would_refuse_it():
    assert as_json_text({"b": 1, "a": [True, None]}) == '{"b": 1, "a": [true, null]}'
    assert as_json_text({"s": "\U0001f600"}) == '{"s": "\\ud83d\\ude00"}'  # a pair: kept
    assert as_json_text({"s": "\\ud800 \\u0000"}) == '{"s": "\\\\ud800 \\\\u0000"}'  # text
    assert json.loads(as_json_text({"\x00": "\udfff"})) == {"\ufffd": "\ufffd"}


def test_scrubbing_a_payload_keeps_its_order(client, webhook_auth):
    """``maillog_scrub`` rewrites ``raw`` (bulk_update casts to the column's type)."""
    signed = "eyJhIjoxMiwibSI6M30:1xa3ye:mV45adcwoLoqq7-twHQuQ7H3_BHbuwhaY-GK-jd9sKs"
    url = f"https://x.example/mail/confirm/{signed}/"
    raw = {"RecordType": "Click", "OriginalLink": url, "MessageID": "m", "Tag": "t"}
    Event.objects.create(
        esp_name="Postmark", event_type="clicked", dedupe_key="k1", click_url=url, raw=raw
    )
    call_command("maillog_scrub", stdout=io.StringIO())
    scrubbed = Event.objects.get().raw
    assert signed not in json.dumps(scrubbed)
    assert list(scrubbed) == list(raw)


def test_payloads_read_back_as_written_whatever_their_json_type():
    """PostgreSQL's driver parses ``json`` itself; the field reads the text instead, so a
    payload that is a JSON string stays a string, and a DISTINCT still compares rows."""
    for n, raw in enumerate(["42", "null", "", [3, "a"], {"b": {}, "a": []}, 1.5, None]):
        Event.objects.create(esp_name="x", event_type="sent", dedupe_key=f"k{n}", raw=raw)
    stored = list(Event.objects.order_by("pk").values_list("raw", flat=True))
    assert stored == ["42", "null", "", [3, "a"], {"b": {}, "a": []}, 1.5, None]
    assert Event.objects.values("esp_name", "raw").distinct().count() == 7


def test_json_text_handed_to_the_field_is_written_as_it_is():
    """Events are encoded once (to hold them to MAX_RAW_PAYLOAD): the field takes that
    text (wagtail_maillog.bulk.JSONText) as JSON, not as a string to encode again."""
    field = Event._meta.get_field("raw")
    prepared = field.get_db_prep_save(JSONText('{"b": 1, "a": "\\u0000"}'), connection)
    if connection.vendor == "postgresql":
        assert prepared.dumps(prepared.obj) == '{"b": 1, "a": "\\ufffd"}'
    else:
        assert prepared == '{"b": 1, "a": "\\u0000"}'
