"""A member mailing in a real browser, from composing to its results (Chromium, Playwright).

Members of the test app (the audience "All members"): four with a confirmed
address, one of them at ``bounce.example`` (the sandbox ESP bounces it), and
three left out: a bounced address, an unconfirmed one and none at all. An
administrator opens Mailings from the Mail menu, composes a mailing (a merge
field in the subject, the body typed in Wagtail's Draftail editor), saves it,
opens the preview (who gets it, who is left out and why, the HTML with their
own name filled in, the plain text), sends a test to themself, sends the
mailing now and follows the results block to 100 %, then asks for "Update
results", which refreshes the block in place.

The mailing goes out for real: "Send now" queues it in the live server's
request (the django-q2 task runs in-process, sync mode of ``tests/settings.py``);
the outbox worker, held meanwhile, then runs in the test's thread as if in a
worker process, while the page polls the results block; it hands the mail to
the sandbox ESP, whose events (``SANDBOX_EVENT_DELAY`` 0) arrive at once. The
test mail goes through ``EMAIL_BACKEND`` (anymail's test backend, so it is in
``django.core.mail.outbox``). Screenshots go to
``test-artifacts/browser/mailing-*.png``; with ``MAILLOG_UPDATE_DOC_IMAGES=1``
the three best are copied to ``docs/images/``.

Same requirements as ``tests/test_browser.py`` (whose browser fixtures and
helpers this module uses): skipped without Playwright or Chromium, except on
CI (``CI=true``), where that fails.
"""

from __future__ import annotations

import os
import re
import shutil

import pytest
from django.contrib.auth.models import User
from django.core import mail
from django.core.cache import cache

from tests.test_browser import (  # noqa: F401 (browser, offline_admin, page are fixtures)
    ARTIFACTS,
    DOC_IMAGES,
    PASSWORD,
    assert_wagtail_styles_loaded,
    browser,
    check_icons,
    offline_admin,
    page,
    shot,
)
from tests.testapp.models import Member
from wagtail_maillog.addresses.health import set_status
from wagtail_maillog.mailings import sending
from wagtail_maillog.models import AddressStatus, Mailing, MailingState, Recipient
from wagtail_maillog.outbox import worker
from wagtail_maillog.status import Status

pytestmark = pytest.mark.browser

MAILINGS = "/admin/maillog/mailings/"
DOC_SHOTS = {  # screenshot in ARTIFACTS -> name in docs/images
    "mailing-01-compose.png": "mailing-compose.png",
    "mailing-03-preview.png": "mailing-preview.png",
    "mailing-06-results.png": "mailing-results.png",
}
SUBJECT = "Spring news for {{ name }}"
BOUNCES = "xavier@bounce.example"  # the sandbox ESP bounces *@bounce.example
LEFT_OUT = [  # reason, members: in the preview, and in the results (views.REASON_ORDER)
    ["No email address", "1"],
    ["Unconfirmed", "1"],
    ["Problem (bounced)", "1"],
]


@pytest.fixture
def sandbox(settings):
    """Mailings go through the sandbox ESP, whose events come at once."""
    settings.WAGTAIL_MAILLOG = {
        "CONNECTORS": {"newsletter": {"BACKEND": "wagtail_maillog.sandbox.SandboxBackend"}},
        "DEFAULT_CONNECTOR": "newsletter",
        "SANDBOX_EVENT_DELAY": 0,
    }


def make_members() -> None:
    """Saving a member records its address (unconfirmed); then some are confirmed."""
    confirmed = [
        ("Alice Martin", "alice.martin@example.com"),
        ("Bob Jones", "bob.jones@example.com"),
        ("Erin Brown", "erin.brown@example.com"),
        ("Xavier Bounce", BOUNCES),
    ]
    for name, email in [
        *confirmed,
        ("Carol White", "carol.white@exmaple.com"),  # bounced before: left out
        ("Ivan Petrov", "ivan.petrov@example.net"),  # never confirmed: left out
        ("Nora Nomail", ""),  # no address: left out
    ]:
        Member.objects.create(name=name, email=email)
    set_status(
        [(email, AddressStatus.CONFIRMED, "Confirmed through the link") for _, email in confirmed]
    )
    set_status([("carol.white@exmaple.com", AddressStatus.BOUNCED, "550 5.1.1 User unknown")])


def login(tab, base: str) -> None:
    tab.goto(f"{base}/admin/login/")
    tab.fill("input[name=username]", "admin")
    tab.fill("input[name=password]", PASSWORD)
    tab.click("form button[type=submit]")
    tab.wait_for_url(f"{base}/admin/")


def press(locator) -> None:
    """Click, once the element is scrolled into view at once.

    Wagtail's ``main#main`` scrolls smoothly (``scroll-behavior: smooth``); the
    scroll Playwright makes before a click can then still be moving when it
    clicks, and the click lands where the button was (here: in the preview's
    frame). A person sees the button before clicking it.
    """
    locator.evaluate("e => e.scrollIntoView({block: 'center', behavior: 'instant'})")
    locator.click()


def table_rows(tab, selector: str) -> list[list[str]]:
    """The cells' text of each body row of a table."""
    return tab.locator(f"{selector} tbody tr").evaluate_all(
        "rows => rows.map(r => [...r.cells].map(c => c.innerText.trim()))"
    )


def test_compose_preview_test_send_and_follow_a_mailing(page, live_server, sandbox):  # noqa: F811
    base = live_server.url
    make_members()
    User.objects.create_superuser(
        "admin", "admin@example.com", PASSWORD, first_name="Ada", last_name="Admin"
    )
    login(page, base)

    # ---- Mailings, opened from the Mail menu ------------------------------------
    sidebar = page.locator("#wagtail-sidebar")
    sidebar.get_by_role("button", name="Mail").click()
    sidebar.get_by_role("link", name="Mailings").click()
    page.wait_for_url(f"{base}{MAILINGS}")
    assert_wagtail_styles_loaded(page)

    # ---- compose ------------------------------------------------------------------
    page.locator("main a", has_text=re.compile(r"^\s*Add mailing\s*$")).first.click()
    page.wait_for_url(f"{base}{MAILINGS}new/")
    page.locator("input#id_subject").fill(SUBJECT)
    editor = page.locator(".Draftail-Editor [contenteditable=true]")
    editor.click()
    page.keyboard.type("Dear {{ name }},")
    page.keyboard.press("Enter")
    page.keyboard.type("the garden opens again on 1 April. See you there!")
    # Draftail writes its content to the hidden input a moment after the last key
    page.wait_for_function(
        "() => document.querySelector('#id_body').value.includes('See you there!')"
    )
    page.locator("select#id_audience").select_option(label="All members")
    check_icons(page, "compose form")
    shot(page, "mailing-01-compose.png")
    page.locator("form button[type=submit]", has_text="Create").first.click()
    page.locator(".messages .success").wait_for()
    mailing = Mailing.objects.get()
    assert mailing.subject == SUBJECT
    assert mailing.audience == "members"
    assert mailing.state == MailingState.DRAFT
    assert "Dear {{ name }}," in mailing.body
    assert "the garden opens again" in mailing.body
    shot(page, "mailing-02-saved.png")

    # ---- its overview, then the preview ---------------------------------------
    page.goto(f"{base}{MAILINGS}")
    page.locator("#listing-results a", has_text=SUBJECT).click()
    page.wait_for_url(f"{base}{MAILINGS}{mailing.pk}/")
    page.locator("main a.button", has_text="Preview and test").click()
    page.wait_for_url(f"{base}{MAILINGS}{mailing.pk}/preview/")
    receive = page.locator(".maillog-preview-audience")
    assert receive.locator(".maillog-preview-receive").inner_text() == "4"
    assert "4 members of “All members” will get this mailing." in receive.inner_text()
    assert table_rows(page, "table.maillog-preview-skipped") == LEFT_OUT
    assert page.locator(".maillog-preview-subject").inner_text() == "Spring news for Ada Admin"
    frame = page.frame_locator("iframe.maillog-preview-html")
    frame.get_by_text("Dear Ada Admin,").wait_for()
    assert "the garden opens again on 1 April" in frame.locator("body").inner_text()
    assert "{{" not in frame.locator("body").inner_text()
    text = page.locator("pre.maillog-preview-text").inner_text()
    assert "Dear Ada Admin," in text
    assert "the garden opens again on 1 April. See you there!" in text
    assert "<p>" not in text
    check_icons(page, "preview")
    shot(page, "mailing-03-preview.png")

    # ---- a test to oneself --------------------------------------------------------
    press(page.get_by_role("button", name="Send a test to admin@example.com"))
    page.locator(".messages .success", has_text="A test was sent to admin@example.com.").wait_for()
    assert page.url == f"{base}{MAILINGS}{mailing.pk}/preview/"
    (test_mail,) = mail.outbox
    assert test_mail.to == ["admin@example.com"]
    assert test_mail.subject == "[TEST] Spring news for Ada Admin"
    assert "Dear Ada Admin," in test_mail.body
    logged = Recipient.objects.get(address="admin@example.com")
    assert logged.message.source == "mailing_test"
    assert not sending.recipients_of(mailing).exists()  # a test is no recipient
    mailing.refresh_from_db()
    assert mailing.state == MailingState.DRAFT
    shot(page, "mailing-04-test-sent.png")

    # ---- send now -------------------------------------------------------------------
    press(page.locator("main a.button", has_text="Send…"))
    page.wait_for_url(f"{base}{MAILINGS}{mailing.pk}/send/")
    assert (
        "goes to 4 members of “All members”" in page.locator(".maillog-send-summary").inner_text()
    )
    assert page.get_by_label("Send now").is_checked()
    check_icons(page, "send form")
    shot(page, "mailing-05-send.png")
    # Hold the outbox worker: the mailing is queued in this request, then sent by
    # the worker "elsewhere" (this test's thread, below) while the page polls.
    cache.set(worker.WAKE_KEY, 1, timeout=300)
    page.get_by_role("button", name="Send", exact=True).click()
    page.wait_for_url(f"{base}{MAILINGS}{mailing.pk}/")
    page.locator(".messages .success", has_text="is being sent.").wait_for()

    # ---- the results block, polled while busy, reaches 100 % --------------------------
    block = page.locator("#maillog-mailing-progress")
    progress = block.locator(".maillog-progress")
    assert progress.get_attribute("data-busy") == "true"
    assert progress.get_attribute("data-percent") == "0"
    assert "0 of 4 handed to the ESP" in block.locator(".maillog-progress__figure").inner_text()
    counts = dict(table_rows(page, "table.maillog-progress__counts"))
    assert counts == {"Pending": "4"}, counts
    mailing.refresh_from_db()
    assert mailing.state == MailingState.QUEUED
    assert mailing.queued_count == 4
    page.wait_for_load_state("networkidle")
    check_icons(page, "sending")
    shot(page, "mailing-06a-sending.png")
    page.evaluate("window.maillogStayed = true")  # gone if the page is loaded again
    url = page.url
    polls: list[int] = []
    page.on("response", lambda r: polls.append(r.status) if "/progress/" in r.url else None)
    # Every request of the page passes the route of the ``page`` fixture, which runs
    # in this thread: none reaches the live server while the worker runs here.
    ran = worker.process_outbox(time_budget=10)
    assert "failed 0" in ran and not ran.startswith("sent 0"), ran
    # the page's next poll (every 2.5 s while busy) brings the new block
    block.locator('.maillog-progress[data-percent="100"]').wait_for()
    assert page.url == url
    assert page.evaluate("window.maillogStayed === true"), "the page was loaded again"
    assert polls and set(polls) == {200}, polls
    assert progress.get_attribute("data-busy") == "false"  # and so it stops polling
    assert block.locator(".maillog-progress__state").inner_text().strip() == "Sent"
    assert block.locator(".maillog-progress__percent").inner_text() == "100 %"
    assert "4 of 4 handed to the ESP" in block.locator(".maillog-progress__figure").inner_text()
    bar = block.locator(".maillog-progress__bar")
    assert bar.get_attribute("aria-valuenow") == "100"
    page.wait_for_timeout(500)  # the bar's width transition
    filled = bar.locator("span").evaluate("e => e.getBoundingClientRect().width")
    assert abs(filled - bar.evaluate("e => e.clientWidth")) < 1.5, "the bar is not full"
    counts = dict(
        (row[0], int(row[1])) for row in table_rows(page, "table.maillog-progress__counts")
    )
    assert counts.get("Bounced") == 1, counts
    assert sum(counts.values()) == 4
    statuses = set(sending.recipients_of(mailing).values_list("status", flat=True))
    assert Status.BOUNCED in statuses and statuses <= {
        Status.DELIVERED,
        Status.OPENED,
        Status.CLICKED,
        Status.BOUNCED,
    }
    problems = table_rows(page, "table.maillog-progress__problems")
    assert [row[0] for row in problems] == [BOUNCES]
    assert problems[0][1] == "Bounced"
    assert "does not accept mail" in problems[0][2]
    assert table_rows(page, "table.maillog-progress__skipped") == LEFT_OUT
    assert page.get_by_role("heading", name="Members left out").is_visible()
    assert len(mail.outbox) == 1  # the mailing went through the sandbox, not EMAIL_BACKEND
    check_icons(page, "results")
    shot(page, "mailing-06-results.png")

    # ---- "Update results" refreshes the block in place -------------------------------
    assert page.get_by_text("Results last updated").count() == 0
    with page.expect_response(re.compile(rf"{MAILINGS}{mailing.pk}/refresh/$")) as refreshed:
        press(block.get_by_role("button", name="Update results"))
    assert refreshed.value.status == 200
    block.get_by_text("Results last updated").wait_for()
    assert page.url == url
    assert page.evaluate("window.maillogStayed === true"), "the page was loaded again"
    assert block.locator('.maillog-progress[data-percent="100"]').count() == 1
    mailing.refresh_from_db()
    assert mailing.refreshed_at is not None and not mailing.refresh_running
    shot(page, "mailing-07-refreshed.png")
    seen = len(polls)
    page.wait_for_timeout(3000)  # longer than the poll interval
    assert len(polls) == seen, "the page goes on polling a finished mailing"

    if os.environ.get("MAILLOG_UPDATE_DOC_IMAGES"):
        DOC_IMAGES.mkdir(parents=True, exist_ok=True)
        for source, target in DOC_SHOTS.items():
            shutil.copyfile(ARTIFACTS / source, DOC_IMAGES / target)

    page.watch.check()  # no dialog, JavaScript error, failed request, stray icon


def facts(tab) -> dict[str, str]:
    """The overview's facts list: {term: value}."""
    return dict(
        tab.locator(".maillog-mailing-facts").evaluate(
            """dl => [...dl.querySelectorAll('dt')].map(
                dt => [dt.innerText.trim(), dt.nextElementSibling.innerText.trim()])"""
        )
    )


def test_a_cancelled_schedule_and_a_fully_delivered_mailing(
    page,  # noqa: F811
    live_server,
    sandbox,
):
    """Issue #17: each mailing's state says what happened, and the results stop polling."""
    base = live_server.url
    members = [("Alice Martin", "alice.martin@example.com"), ("Bob Jones", "bob.jones@example.com")]
    for name, email in members:
        Member.objects.create(name=name, email=email)
    set_status(
        [(email, AddressStatus.CONFIRMED, "Confirmed through the link") for _, email in members]
    )
    User.objects.create_superuser(
        "admin", "admin@example.com", PASSWORD, first_name="Ada", last_name="Admin"
    )
    autumn = Mailing.objects.create(
        subject="Autumn fair", body="<p>Dear {{ name }}</p>", audience="members"
    )
    winter = Mailing.objects.create(
        subject="Winter news", body="<p>Dear {{ name }}</p>", audience="members"
    )
    login(page, base)

    # ---- scheduled, then cancelled ----------------------------------------------------
    page.goto(f"{base}{MAILINGS}{autumn.pk}/send/")
    page.get_by_label("Send at a time").check()
    page.locator("input#id_send_at").fill("2099-10-01 09:00")
    # Wagtail's date picker stays open over the button: submit as the button does
    page.get_by_role("button", name="Send", exact=True).evaluate("b => b.form.requestSubmit(b)")
    page.wait_for_url(f"{base}{MAILINGS}{autumn.pk}/")
    assert "Will be sent at" in facts(page)
    press(page.locator("main a.button", has_text="Cancel…"))
    page.wait_for_url(f"{base}{MAILINGS}{autumn.pk}/cancel/")
    page.get_by_role("button", name="Yes, cancel it").click()
    page.wait_for_url(f"{base}{MAILINGS}{autumn.pk}/")
    page.locator(".messages .success", has_text="The mailing was cancelled.").wait_for()
    seen = facts(page)
    assert "Sent at" not in seen and "Sent by" not in seen, seen
    assert seen["Was scheduled for"] and seen["Cancelled at"]
    assert seen["Cancelled by"] == "Ada Admin"
    assert seen["Already gone"] == "Nothing: it had not started."
    state = page.locator(".maillog-progress__state .maillog-mailing-state")
    assert state.inner_text().strip() == "Cancelled"
    progress = page.locator("#maillog-mailing-progress .maillog-progress")
    assert progress.get_attribute("data-busy") == "false"
    check_icons(page, "cancelled mailing")
    shot(page, "mailing-08-cancelled.png")
    autumn.refresh_from_db()
    assert autumn.state == MailingState.CANCELLED and autumn.started_at is None

    # ---- sent now, every recipient delivered: "Sent", and the polling stops -------------
    page.goto(f"{base}{MAILINGS}{winter.pk}/send/")
    cache.set(worker.WAKE_KEY, 1, timeout=300)  # the worker runs below, in this thread
    page.get_by_role("button", name="Send", exact=True).click()
    page.wait_for_url(f"{base}{MAILINGS}{winter.pk}/")
    block = page.locator("#maillog-mailing-progress")
    assert block.locator(".maillog-progress").get_attribute("data-busy") == "true"
    assert block.locator(".maillog-progress__state").inner_text().strip() == "Sending"
    polls: list[int] = []
    page.on("response", lambda r: polls.append(r.status) if "/progress/" in r.url else None)
    ran = worker.process_outbox(time_budget=10)
    assert "failed 0" in ran and not ran.startswith("sent 0"), ran
    block.locator('.maillog-progress[data-busy="false"]').wait_for()
    assert block.locator(".maillog-progress__state").inner_text().strip() == "Sent"
    statuses = set(sending.recipients_of(winter).values_list("status", flat=True))
    assert statuses and statuses <= {Status.DELIVERED, Status.OPENED, Status.CLICKED}
    winter.refresh_from_db()
    assert winter.state == MailingState.SENT and winter.finished_at is not None
    seen_polls = len(polls)
    page.wait_for_timeout(3000)  # longer than the poll interval
    assert len(polls) == seen_polls, "the page goes on polling a sent mailing"
    page.reload()
    seen = facts(page)
    assert seen["Sent at"] and seen["Sent by"] == "Ada Admin" and "Cancelled at" not in seen
    check_icons(page, "sent mailing")
    shot(page, "mailing-09-sent.png")
    page.watch.check()
