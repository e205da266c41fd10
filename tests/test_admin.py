"""The mail log in the Wagtail admin, as users with and without each permission."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, User
from django.contrib.contenttypes.models import ContentType
from django.core.mail import EmailMessage
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tests.testapp.models import Invoice
from tests.utils import client_for, denied, make_user, post_json, send_with_ids
from wagtail_maillog import label
from wagtail_maillog.models import Message, Recipient, SendAttempt
from wagtail_maillog.status import Status

pytestmark = pytest.mark.django_db

XSS = "<script>alert(1)</script>"
LOG = "/admin/maillog/"


def send_as(user: User | None, subject: str, to: str = "someone@example.com") -> Message:
    msg = EmailMessage(subject, "Body", "site@example.com", [to])
    label(msg, user=user)
    msg.send()
    return Message.objects.get(pk=msg._maillog_pk)


@pytest.fixture(autouse=True)
def _store_bodies(settings):
    """Resend needs the body: these tests keep it (the default, off, is tested in
    tests/test_secrets.py)."""
    settings.WAGTAIL_MAILLOG = {**settings.WAGTAIL_MAILLOG, "STORE_BODY": True}


@pytest.fixture
def team():
    return Group.objects.create(name="Support")


@pytest.fixture
def people(team):
    other_team = Group.objects.create(name="Sales")
    return {
        "editor": make_user("editor"),
        "viewer": make_user("viewer", "view_message", groups=(team,)),
        "teammate": make_user("teammate", groups=(team,)),
        "outsider": make_user("outsider", "view_message", groups=(other_team,)),
        "auditor": make_user("auditor", "view_all_mail"),
        "resender": make_user("resender", "view_all_mail", "resend_message"),
        "canceller": make_user("canceller", "view_all_mail", "cancel_message"),
        "admin": User.objects.create_superuser("admin", "admin@example.com", "pw"),
    }


def test_menu_item_only_for_users_who_may_view(people):
    assert "Mail log" in client_for(people["viewer"]).get("/admin/").content.decode()
    assert "Mail log" in client_for(people["admin"]).get("/admin/").content.decode()
    assert "Mail log" not in client_for(people["editor"]).get("/admin/").content.decode()


@pytest.mark.parametrize(
    "url",
    [
        LOG,
        LOG + "results/",
        LOG + "?export=csv",
        LOG + "{pk}/",
        LOG + "{pk}/resend/",
        LOG + "{pk}/cancel/",
    ],
)
def test_pages_are_forbidden_without_the_view_permission(people, url):
    """Wagtail turns PermissionDenied into a redirect to the dashboard with a message."""
    message = send_as(None, "System mail")
    response = client_for(people["editor"]).get(url.format(pk=message.pk))
    assert denied(response)


def test_anonymous_users_are_sent_to_the_login_page():
    response = Client().get(LOG)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_staff_see_their_own_and_their_teams_mail_only(people):
    own = send_as(people["viewer"], "Mine")
    teams = send_as(people["teammate"], "My team's")
    send_as(people["outsider"], "Another team's")
    system = send_as(None, "System mail")

    page = client_for(people["viewer"]).get(LOG).content.decode()
    assert "Mine" in page and "My team&#x27;s" in page
    assert "Another team" not in page and "System mail" not in page
    everything = client_for(people["auditor"]).get(LOG).content.decode()
    assert all(s in everything for s in ("Mine", "Another team", "System mail"))

    viewer = client_for(people["viewer"])
    assert viewer.get(f"{LOG}{own.pk}/").status_code == 200
    assert viewer.get(f"{LOG}{teams.pk}/").status_code == 200
    assert viewer.get(f"{LOG}{system.pk}/").status_code == 404  # not even its existence


def test_filters_search_and_sorting(people, client, webhook_auth):
    a = send_with_ids(["ann@example.com"], "pm-a", subject="Welcome Ann")
    send_with_ids(["bob@example.com"], "pm-b", subject="Invoice Bob")
    bounce = {
        "RecordType": "Bounce",
        "ID": 9,
        "Type": "HardBounce",
        "MessageID": "pm-a",
        "Email": "ann@example.com",
        "BouncedAt": "2026-11-05T16:33:54Z",
    }
    post_json(client, "/anymail/postmark/tracking/", bounce, webhook_auth)
    Message.objects.filter(pk=a.pk).update(source="newsletter")
    admin = client_for(people["admin"])

    def shown(query: str) -> set[str]:
        response = admin.get(LOG + "?" + query)
        assert response.status_code == 200
        rows = response.context["table"].rows
        return {row.record.address for row in rows}

    assert shown("") == {"ann@example.com", "bob@example.com"}
    assert shown("status=bounced") == {"ann@example.com"}
    assert shown("status=bounced&status=queued") == {"ann@example.com", "bob@example.com"}
    assert shown("source=newsletter") == {"ann@example.com"}
    assert shown("q=invoice") == {"bob@example.com"}
    assert shown("q=BOB@example.com") == {"bob@example.com"}
    assert shown("esp=Test") == {"ann@example.com", "bob@example.com"}
    today = timezone.localdate()
    assert shown(f"created_at_from={today + timedelta(days=1)}") == set()
    assert shown(f"created_at_from={today}&created_at_to={today}") == {
        "ann@example.com",
        "bob@example.com",
    }
    ordered = admin.get(LOG + "?ordering=address").context["table"].rows
    assert [r.record.address for r in ordered] == ["ann@example.com", "bob@example.com"]
    page = admin.get(LOG).content.decode()
    assert 'data-status="bounced"' in page and "Hard bounce" not in page


def test_status_filter_offers_every_status_and_a_not_delivered_group(people):
    rows = {
        Status.NONE: "none@example.com",
        Status.BOUNCED: "bounced@example.com",
        Status.BLOCKED: "blocked@example.com",
        Status.CANCELLED: "cancelled@example.com",
        Status.DELIVERED: "delivered@example.com",
        Status.COMPLAINED: "complained@example.com",
    }
    for status, address in rows.items():
        message = send_as(None, f"To {address}", to=address)
        Recipient.objects.filter(message=message).update(status=status)
    admin = client_for(people["admin"])

    def shown(query: str) -> set[str]:
        response = admin.get(LOG + "?" + query)
        assert response.status_code == 200
        return {row.record.address for row in response.context["table"].rows}

    offered = [v for v, _label in admin.get(LOG).context["filters"].form.fields["status"].choices]
    assert offered == ["not_delivered", *Status.values]  # "None" too
    assert shown("status=none") == {"none@example.com"}
    # bounced, invalid, rejected, blocked, failed, cancelled; complained mail did arrive
    assert shown("status=not_delivered") == {
        "bounced@example.com",
        "blocked@example.com",
        "cancelled@example.com",
    }
    assert shown("status=not_delivered&status=delivered") == {
        "bounced@example.com",
        "blocked@example.com",
        "cancelled@example.com",
        "delivered@example.com",
    }


def test_delivered_says_it_may_still_be_filed_as_spam(people):
    message = send_as(None, "Hello", to="dee@example.com")
    Recipient.objects.filter(message=message).update(status=Status.DELIVERED)
    page = client_for(people["admin"]).get(LOG).content.decode()
    assert 'data-status="delivered"' in page
    assert "It may still have been filed as spam" in page  # seed 002's caveat, as tooltip


def test_yes_no_filters_are_wagtails_all_yes_no(people):
    """No "Unknown" option, and nothing in the URL until Yes or No is picked."""
    admin = client_for(people["admin"])
    page = admin.get(LOG).content.decode()
    assert 'name="opened" value="true"' in page and 'name="opened" value="unknown"' not in page
    assert ">Unknown<" not in page
    outbox = admin.get("/admin/maillog/outbox/").content.decode()
    assert 'name="system_generated" value="true"' in outbox
    assert 'value="unknown"' not in outbox


def test_related_type_filter_and_panel_link(people):
    invoice = Invoice.objects.create(number="77")
    msg = EmailMessage("Invoice 77", "b", "a@example.com", ["payer@example.com"])
    label(msg, related=invoice, source="invoice")
    msg.send()
    send_as(None, "Unrelated")
    admin = client_for(people["admin"])
    ct = Message.objects.get(subject="Invoice 77").content_type_id
    rows = admin.get(f"{LOG}?related_type={ct}&related_id={invoice.pk}").context["table"].rows
    assert [r.record.message.subject for r in rows] == ["Invoice 77"]
    page = admin.get(LOG).content.decode()
    assert "Invoice 77" in page and "Invoice</div>" in page  # label and type


def test_the_related_object_filter_has_one_drawer_entry_and_a_chip_naming_the_object(people):
    """No empty "Related id" entry in the filter drawer; one chip, "Related object:
    Invoice 77 (invoice)", whose removal drops both the type and the id."""
    invoice = Invoice.objects.create(number="77")
    msg = EmailMessage("Invoice 77", "b", "a@example.com", ["payer@example.com"])
    label(msg, related=invoice, source="invoice")
    msg.send()
    other = Invoice.objects.create(number="78")
    msg = EmailMessage("Invoice 78", "b", "a@example.com", ["payer@example.com"])
    label(msg, related=other, source="invoice")
    msg.send()
    admin = client_for(people["admin"])
    ct = ContentType.objects.get_for_model(Invoice).pk
    response = admin.get(f"{LOG}?related_type={ct}&related_id={invoice.pk}")
    assert [r.record.message.subject for r in response.context["table"].rows] == ["Invoice 77"]
    html = response.content.decode()
    drawer = html[html.index("w-drilldown__menu") : html.index("w-drilldown__submenu")]
    assert "Related type" in drawer and "Related id" not in drawer
    assert f'type="hidden" name="related_id" value="{invoice.pk}"' in html  # kept on change
    (chip,) = response.context["view"].active_filters
    assert (chip.field_label, chip.value) == ("Related object", "Invoice 77 (invoice)")
    assert "related_type" not in chip.removed_filter_url
    assert "related_id" not in chip.removed_filter_url
    # a whole type: the model's name, not "Testapp | invoice"
    response = admin.get(f"{LOG}?related_type={ct}")
    assert len(response.context["table"].rows) == 2
    (chip,) = response.context["view"].active_filters
    assert (chip.field_label, chip.value) == ("Related type", "Invoice")
    # an id without its type is no filter (ids are per model)
    assert len(admin.get(f"{LOG}?related_id={invoice.pk}").context["table"].rows) == 2


def test_yes_no_filter_chips_say_yes_or_no(people):
    send_as(None, "Receipt")
    admin = client_for(people["admin"])
    for value, word in (("true", "Yes"), ("false", "No")):
        (chip,) = admin.get(f"{LOG}?opened={value}").context["view"].active_filters
        assert (chip.field_label, chip.value) == ("Opened", word)


def test_user_controlled_text_is_escaped_everywhere(people, client, webhook_auth):
    message = send_with_ids(["x@example.com"], "pm-x", subject=XSS)
    event = {
        "RecordType": "Bounce",
        "ID": 1,
        "Type": "HardBounce",
        "MessageID": "pm-x",
        "Email": "x@example.com",
        "BouncedAt": "2026-11-05T16:33:54Z",
        "Description": XSS,
        "Details": XSS,
    }
    post_json(client, "/anymail/postmark/tracking/", event, webhook_auth)
    Message.objects.filter(pk=message.pk).update(source=XSS, body_html=XSS, body_text=XSS)
    admin = client_for(people["admin"])
    recipient = message.recipients.get()
    for url in (
        LOG,
        LOG + "results/",
        f"{LOG}{message.pk}/",
        f"{LOG}{message.pk}/resend/",
        f"/admin/bulk/wagtail_maillog/recipient/resend/?id={recipient.pk}",
    ):
        body = admin.get(url).content.decode()
        assert XSS not in body, url
        assert "&lt;script&gt;" in body, url


def test_resend_needs_permission_and_confirmation(people):
    original = send_as(None, "Receipt")
    url = f"{LOG}{original.pk}/resend/"
    assert denied(client_for(people["auditor"]).get(url))
    assert denied(client_for(people["auditor"]).post(url))

    resender = client_for(people["resender"])
    confirm = resender.get(url)
    assert confirm.status_code == 200 and "Yes, resend" in confirm.content.decode()
    assert Message.objects.count() == 1  # a GET changes nothing
    assert resender.post(url, {"confirm": "1"}).status_code == 302  # nobody ticked
    assert Message.objects.count() == 1
    response = resender.post(url, {"recipient": [original.recipients.get().pk]})
    assert response.status_code == 302
    new = Message.objects.exclude(pk=original.pk).get()
    assert new.resent_from == original
    assert new.subject == "Receipt" and new.created_by == people["resender"]
    assert new.recipients.get().address == "someone@example.com"
    assert original.recipients.get().events.count() == 0  # old history untouched
    assert response["Location"] == f"{LOG}{new.pk}/"


def test_resend_to_some_recipients_only(people):
    msg = EmailMessage("Hi", "b", "a@example.com", ["one@example.com", "two@example.com"])
    msg.send()
    original = Message.objects.get()
    two = original.recipients.get(address="two@example.com")
    client_for(people["resender"]).post(f"{LOG}{original.pk}/resend/", {"recipient": [two.pk]})
    new = Message.objects.exclude(pk=original.pk).get()
    assert [r.address for r in new.recipients.all()] == ["two@example.com"]


def test_mail_with_attachments_cannot_be_resent(people):
    msg = EmailMessage("Invoice", "b", "a@example.com", ["p@example.com"])
    msg.attach("invoice.pdf", b"%PDF", "application/pdf")
    msg.send()
    original = Message.objects.get()
    resender = client_for(people["resender"])
    assert (
        "Attachments are not kept" in resender.get(f"{LOG}{original.pk}/resend/").content.decode()
    )
    resender.post(f"{LOG}{original.pk}/resend/", {"recipient": [original.recipients.get().pk]})
    assert Message.objects.count() == 1


def test_cancel_only_while_pending_and_with_permission(people):
    message = send_as(None, "Later")
    Recipient.objects.filter(message=message).update(status=Status.PENDING)
    url = f"{LOG}{message.pk}/cancel/"
    assert denied(client_for(people["resender"]).post(url))
    canceller = client_for(people["canceller"])
    assert canceller.post(url).status_code == 302
    assert message.recipients.get().status == Status.CANCELLED
    assert SendAttempt.objects.filter(message=message, outcome="cancelled").exists()

    sent = send_as(None, "Already gone")
    canceller.post(f"{LOG}{sent.pk}/cancel/")
    assert sent.recipients.get().status == Status.SENT


def test_posts_need_a_csrf_token(people):
    message = send_as(None, "Receipt")
    client = Client(enforce_csrf_checks=True)
    client.force_login(people["admin"])
    assert client.post(f"{LOG}{message.pk}/resend/").status_code == 403
    assert client.post(f"{LOG}{message.pk}/cancel/").status_code == 403
    assert Message.objects.count() == 1


def test_bulk_resend_through_wagtails_bulk_actions(people):
    send_as(None, "First", "a@example.com")
    send_as(None, "Second", "b@example.com")
    with_attachment = EmailMessage("Attached", "b", "s@example.com", ["c@example.com"])
    with_attachment.attach("x.pdf", b"%PDF", "application/pdf")
    with_attachment.send()
    ids = "&".join(f"id={r.pk}" for r in Recipient.objects.all())
    url = f"/admin/bulk/wagtail_maillog/recipient/resend/?{ids}&next={LOG}"

    resender = client_for(people["resender"])
    confirm = resender.get(url).content.decode()
    assert "First" in confirm and "You cannot resend these" in confirm
    response = resender.post(url)
    assert response.status_code == 302
    resent = Message.objects.filter(resent_from__isnull=False)
    assert sorted(resent.values_list("subject", flat=True)) == ["First", "Second"]

    client_for(people["auditor"]).post(url)
    assert Message.objects.filter(resent_from__isnull=False).count() == 2


def test_bulk_resend_ignores_rows_the_user_cannot_see(people):
    hidden = send_as(people["outsider"], "Not yours")
    resender_in_team = make_user("teamresender", "view_message", "resend_message")
    url = f"/admin/bulk/wagtail_maillog/recipient/resend/?id={hidden.recipients.get().pk}"
    client_for(resender_in_team).post(url)
    assert not Message.objects.filter(resent_from=hidden).exists()


def test_export_streams_exactly_the_filtered_rows(people, client, webhook_auth):
    send_with_ids(["ann@example.com"], "pm-a")
    send_with_ids(["bob@example.com"], "pm-b")
    bounce = {
        "RecordType": "Bounce",
        "ID": 9,
        "Type": "HardBounce",
        "MessageID": "pm-a",
        "Email": "ann@example.com",
        "BouncedAt": "2026-11-05T16:33:54Z",
    }
    post_json(client, "/anymail/postmark/tracking/", bounce, webhook_auth)
    admin = client_for(people["admin"])
    response = admin.get(LOG + "?status=bounced&export=jsonl")
    assert response.streaming
    body = b"".join(response.streaming_content).decode().splitlines()
    assert len(body) == 1 and '"ann@example.com"' in body[0]
    csv_rows = b"".join(admin.get(LOG + "?export=csv").streaming_content).decode().splitlines()
    assert csv_rows[0].startswith("message_id,") and len(csv_rows) == 3

    own = send_as(people["viewer"], "Mine")
    viewer_rows = (
        b"".join(client_for(people["viewer"]).get(LOG + "?export=jsonl").streaming_content)
        .decode()
        .splitlines()
    )
    assert len(viewer_rows) == 1 and str(own.pk) in viewer_rows[0]


def test_exports_are_in_the_headers_actions_and_follow_the_filters(people):
    """As Wagtail's own listings: "Download CSV" in the header's "Actions" menu (no row of
    export buttons above the table), re-rendered with the results so it follows filters."""
    send_with_ids(["ann@example.com"], "pm-a")
    admin = client_for(people["admin"])
    page = admin.get(LOG + "?status=bounced&p=1").content.decode()
    header = page[: page.index('id="listing-results"')]
    for fmt, name in (("csv", "Download CSV"), ("jsonl", "Download JSON lines")):
        pattern = rf'<a href="([^"]*export={fmt}[^"]*)"[^>]*>(?:(?!</a>).)*{name}'
        link = re.search(pattern, header, re.S)
        assert link, name
        assert "status=bounced" in link.group(1) and "p=1" not in link.group(1)
    assert "maillog-export" not in page
    results = admin.get(LOG + "results/?status=delivered").content.decode()
    assert "status=delivered&amp;export=csv" in results  # Wagtail swaps the header buttons in


def test_the_sorted_column_is_marked_the_default_one_too(people):
    send_with_ids(["ann@example.com"], "pm-a")
    admin = client_for(people["admin"])

    def header(url: str, column: str) -> str:
        page = admin.get(url).content.decode()
        return re.search(rf'<th[^>]*data-column="{column}"[^>]*>.*?</th>', page, re.S).group(0)

    default = header(LOG, "created_at")
    assert 'aria-sort="descending"' in default and "teal" in default
    assert f'href="{LOG}?ordering=created_at"' in default
    by_address = header(LOG + "?ordering=address", "address")
    assert 'aria-sort="ascending"' in by_address and "teal" in by_address
    assert "teal" not in header(LOG + "?ordering=address", "created_at")


def _fill(count: int, prefix: str) -> None:
    invoice = Invoice.objects.create(number=prefix)
    for i in range(count):
        msg = EmailMessage(f"{prefix} {i}", "b", "a@example.com", [f"{prefix}{i}@example.com"])
        label(msg, related=invoice if i % 2 else None, source="invoice" if i % 3 else "system")
        msg.send()


@pytest.mark.parametrize(
    "query",
    [
        "",
        "status=sent",
        "q=example",
        "source=invoice",
        "created_at_from=2020-01-01",
        "ordering=status",
        "opened=true",
    ],
)
def test_list_queries_do_not_grow_with_the_number_of_rows(people, query):
    admin = client_for(people["admin"])
    admin.get(LOG)  # warm caches (content types, permissions, site)

    counts = []
    for size, prefix in ((3, "a"), (40, "b")):
        _fill(size, prefix)
        with CaptureQueriesContext(connection) as queries:
            assert admin.get(f"{LOG}?{query}").status_code == 200
        counts.append(len(queries))
    assert counts[0] == counts[1], counts


def test_detail_page_shows_the_whole_story(people, client, webhook_auth):
    message = send_with_ids(["ann@example.com"], "pm-a", subject="Welcome")
    for record in (
        {
            "RecordType": "Delivery",
            "MessageID": "pm-a",
            "Recipient": "ann@example.com",
            "DeliveredAt": "2026-11-05T16:33:50Z",
            "Details": "250 2.0.0 OK",
        },
        {
            "RecordType": "Click",
            "MessageID": "pm-a",
            "Recipient": "ann@example.com",
            "ReceivedAt": "2026-11-05T16:40:00Z",
            "OriginalLink": "https://example.com/offer",
            "UserAgent": "Mozilla/5.0 Firefox",
        },
    ):
        post_json(client, "/anymail/postmark/tracking/", record, webhook_auth)
    page = client_for(people["admin"]).get(f"{LOG}{message.pk}/").content.decode()
    for text in (
        "250 2.0.0 OK",
        "https://example.com/offer",
        "Mozilla/5.0 Firefox",
        "Raw ESP payloads",
        "pm-a",
        "Body",
        "image proxies" if False else "tracking image",
    ):
        assert text in page, text


def test_deferred_mail_says_temporary_bounce_or_postponed(people, client, webhook_auth, settings):
    """Seed 001 tells "temporary bounce" (the receiving server refused it for now; bounced
    after DEFERRED_BOUNCE_DAYS) from "postponed" (the ESP put it off): both are Deferred."""
    settings.WAGTAIL_MAILLOG = {
        **getattr(settings, "WAGTAIL_MAILLOG", {}),
        "DEFERRED_BOUNCE_DAYS": 4,
    }
    message = send_with_ids(
        ["ann@example.com", "bob@example.com"],
        {"ann@example.com": "pm-a", "bob@example.com": "pm-b"},
    )
    for address, esp_id, kind in (("ann", "pm-a", "Transient"), ("bob", "pm-b", "DnsError")):
        post_json(
            client,
            "/anymail/postmark/tracking/",
            {
                "RecordType": "Bounce",
                "Type": kind,
                "MessageID": esp_id,
                "Email": f"{address}@example.com",
                "BouncedAt": "2026-11-05T16:33:50Z",
                "Description": "Try again later",
            },
            webhook_auth,
        )
    assert set(message.recipients.values_list("status", flat=True)) == {"deferred"}
    page = client_for(people["admin"]).get(f"{LOG}{message.pk}/").content.decode()
    assert page.count('data-deferred-kind="temporary_bounce"') == 2  # recipients table, timeline
    assert page.count('data-deferred-kind="postponed"') == 2
    assert "Temporary bounce" in page and "Postponed" in page
    assert "after 4 days" in page


def test_raw_payloads_are_indented_json_in_the_esps_key_order(people, client, webhook_auth):
    message = send_with_ids(["ann@example.com"], "pm-a")
    record = {
        "RecordType": "Delivery",
        "MessageID": "pm-a",
        "Recipient": "ann@example.com",
        "DeliveredAt": "2026-11-05T16:33:50Z",
        "Details": "250 2.0.0 OK",
        "Metadata": {"zebra": "é", "apple": 1},
    }
    post_json(client, "/anymail/postmark/tracking/", record, webhook_auth)
    page = client_for(people["admin"]).get(f"{LOG}{message.pk}/").content.decode()
    shown = page.split("data-raw-payload>")[1].split("</pre>")[0]
    assert shown.startswith("{\n  &quot;")
    assert "  &quot;Metadata&quot;: {\n    &quot;" in shown
    assert "&#x27;" not in shown and "é" in shown
    # on PostgreSQL too: a json column, not jsonb (tests/test_payload_order.py)
    assert shown.index("RecordType") < shown.index("MessageID") < shown.index("Details")
    assert shown.index("zebra") < shown.index("apple")


def test_no_empty_code_box_for_a_recipient_without_esp_id(people):
    from wagtail_maillog.models import Recipient

    message = send_with_ids(["ann@example.com"], "pm-a")
    Recipient.objects.filter(message=message).update(esp_message_id="", status="blocked")
    page = client_for(people["admin"]).get(f"{LOG}{message.pk}/").content.decode()
    assert "<code></code>" not in page


def test_body_is_hidden_when_the_setting_is_off(people, settings):
    message = send_as(None, "Private")
    admin = client_for(people["admin"])
    assert (
        '<pre class="maillog-raw">Body</pre>' in admin.get(f"{LOG}{message.pk}/").content.decode()
    )
    settings.WAGTAIL_MAILLOG = {"STORE_BODY": False}
    assert (
        '<pre class="maillog-raw">Body</pre>'
        not in admin.get(f"{LOG}{message.pk}/").content.decode()
    )


def test_bulk_select_all_follows_the_listings_filters_and_search(people):
    send_as(None, "First", "a@example.com")
    send_as(None, "Second", "b@example.com")
    url = f"/admin/bulk/wagtail_maillog/recipient/resend/?id=all&q=First&next={LOG}"
    client_for(people["resender"]).post(url)
    assert list(
        Message.objects.filter(resent_from__isnull=False).values_list("subject", flat=True)
    ) == ["First"]


def test_odd_ids_do_not_crash(people):
    message = send_as(None, "Receipt")
    admin = client_for(people["admin"])
    invoice_ct = ContentType.objects.get_for_model(Invoice).pk
    response = admin.get(f"{LOG}related/{invoice_ct}/not-a-number/")
    assert response.status_code == 302 and "related_id=not-a-number" in response["Location"]
    assert admin.post(f"{LOG}{message.pk}/resend/", {"recipient": ["x"]}).status_code == 302
    assert Message.objects.count() == 1


def test_filter_choices_only_show_what_the_user_may_see(people):
    mine = send_as(people["viewer"], "Mine")
    Message.objects.filter(pk=mine.pk).update(source="mine")
    other = send_as(people["outsider"], "Theirs")
    Message.objects.filter(pk=other.pk).update(source="secret-source")
    page = client_for(people["viewer"]).get(LOG).content.decode()
    assert "Mine" in page and "Secret source" not in page and "secret-source" not in page


def test_dates_read_as_wagtails_human_readable_date_in_the_users_time_zone():
    """The list's date column gives what Wagtail's own listings show, the markup of
    ``{% human_readable_date value %}`` ("2 hours ago", the exact time in the active
    time zone and locale as tooltip), without rendering that template per cell."""
    import re
    from datetime import UTC, datetime

    from django.template import Context, Template
    from django.utils import translation

    from wagtail_maillog.admin.columns import HumanReadableDateColumn

    value = datetime(2026, 3, 1, 23, 30, tzinfo=UTC)
    template = Template("{% load wagtailadmin_tags %}{% human_readable_date value %}")

    def squeeze(html: str) -> str:
        return re.sub(r">\s+", ">", re.sub(r"\s+<", "<", html.strip()))

    for zone, language, day in [
        ("Asia/Tokyo", "de", "2. März 2026"),
        ("UTC", "en", "March 1, 2026"),
    ]:
        with timezone.override(zone), translation.override(language):
            shown = HumanReadableDateColumn().render(value)
            assert squeeze(shown) == squeeze(template.render(Context({"value": value})))
            assert day in shown
    recent = timezone.now() - timedelta(minutes=20)
    with translation.override("en"):
        assert ">20\xa0minutes ago</time>" in HumanReadableDateColumn().render(recent)


def test_a_long_timeline_is_paged(people):
    """20,000 opens on one recipient once made a 25 MB page: 100 events a page."""
    from wagtail_maillog.models import Event

    message = send_with_ids(["ann@example.com"], "esp-1")
    recipient = message.recipients.get()
    now = timezone.now()
    Event.objects.bulk_create(
        Event(
            recipient=recipient,
            esp_name="Postmark",
            esp_message_id="esp-1",
            address="ann@example.com",
            event_type="opened",
            timestamp=now + timedelta(seconds=i),
            dedupe_key=f"open-{i}",
            raw={"n": i},
        )
        for i in range(250)
    )
    client = client_for(people["admin"])
    first = client.get(f"{LOG}{message.pk}/").content.decode()
    assert first.count('data-event="opened"') == 100
    assert "Page 1 of 3" in first and "?p=2" in first
    last = client.get(f"{LOG}{message.pk}/?p=3").content.decode()
    assert last.count('data-event="opened"') == 50
    assert client.get(f"{LOG}{message.pk}/?p=999").status_code == 200  # the last page


@pytest.mark.parametrize("language", ["da", "sv", "fr"])
def test_the_new_words_of_issue_18_are_translated(language):
    from django.utils import translation
    from django.utils.translation import gettext, ngettext

    from wagtail_maillog.addresses.health import CAUSE_FOR_STATUS
    from wagtail_maillog.status import DELIVERED_CAVEAT

    singular = "The connector %(name)s is disabled: %(count)d mail in the outbox waits until it is enabled again."  # noqa: E501
    plural = "The connector %(name)s is disabled: %(count)d mails in the outbox wait until it is enabled again."  # noqa: E501
    texts = [
        "Not delivered (any failure)",
        "This mail has not been tried yet: it is sent at its scheduled time.",
        "Oldest request sent: %(date)s",
        "Temporary bounce",
        "Postponed",
        "Download JSON lines",
    ]
    with translation.override(language):
        assert ngettext(singular, plural, 4) != plural
        for text in texts:
            assert gettext(text) != text, text
        assert str(DELIVERED_CAVEAT).split()[0] != "Delivered"
        for cause in CAUSE_FOR_STATUS.values():
            assert not str(cause).startswith(("A message", "The ")), cause
