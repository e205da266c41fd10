"""What each recipient of a batch received (wagtail_maillog/merging.py): merge values
kept per recipient without tokens, and filled into the subject and body for display."""

from __future__ import annotations

import pytest
from django.core import signing
from django.core.mail import EmailMultiAlternatives

from wagtail_maillog.merging import MERGE_FIELD_ATTRIBUTE, fill, values_to_keep
from wagtail_maillog.models import Message, Recipient

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("spelling", "template"),
    [
        ("%recipient.{}%", "Hi %recipient.name%, %recipient.city%"),  # Mailgun
        ("{{{{{}}}}}", "Hi {{name}}, {{ city }}"),  # SparkPost, anymail's test backend
        ("[[var:{}]]", "Hi [[var:name]], [[var:city]]"),  # Mailjet
        ("*|{}|*", "Hi *|name|*, *|city|*"),  # Mandrill
        ("{{{{params.{}}}}}", "Hi {{params.name}}, {{params.city}}"),  # Brevo
    ],
)
def test_fill_reads_each_esps_spelling(spelling, template):
    assert fill(template, spelling, {"name": "Ann", "city": "Oslo"}) == "Hi Ann, Oslo"


def test_fill_escapes_plain_values_in_html_and_keeps_unknown_fields():
    values = {"name": "<b>Bo & Co</b>"}
    assert fill("{{name}}", "{{{{{}}}}}", values, html=True) == "&lt;b&gt;Bo &amp; Co&lt;/b&gt;"
    assert fill("{{name_html}}", "{{{{{}}}}}", values, html=True) == (
        "&lt;b&gt;Bo &amp; Co&lt;/b&gt;"
    )
    assert fill("{{name}}", "{{{{{}}}}}", values) == "<b>Bo & Co</b>"
    assert fill("{{other}} {{name}}", "{{{{{}}}}}", values) == "{{other}} <b>Bo & Co</b>"
    assert fill("{{name}}", None, values) == "{{name}}"


def test_kept_values_lose_tokens_and_derivable_html():
    token = signing.TimestampSigner(salt="x").sign("42")
    kept = values_to_keep(
        {
            "name": "Bo & Co",
            "name_html": "Bo &amp; Co",  # derivable: left out
            "note_html": "<i>own</i>",  # not derivable: kept
            "unsubscribe_url": f"https://example.com/mail/unsubscribe/{token}/",
        }
    )
    assert kept == {
        "name": "Bo & Co",
        "note_html": "<i>own</i>",
        "unsubscribe_url": "https://example.com/mail/unsubscribe/[redacted]/",
    }
    assert values_to_keep(None) is None and values_to_keep({}) is None


def _batch(**attrs: object) -> Message:
    msg = EmailMultiAlternatives(
        "News for {{name}}", "Hi {{name}}", "site@example.com", ["a@example.com", "B@example.com"]
    )
    msg.attach_alternative("<p>Hi {{name_html}}</p>", "text/html")
    msg.merge_data = {"a@example.com": {"name": "Ann"}, "B@example.com": {"name": "<Bob>"}}
    for name, value in attrs.items():
        setattr(msg, name, value)
    msg.send()
    return Message.objects.get(pk=msg._maillog_pk)


def test_a_batch_sent_through_anymail_keeps_each_recipients_values(settings):
    settings.WAGTAIL_MAILLOG = {"STORE_BODY": True}
    message = _batch(**{MERGE_FIELD_ATTRIBUTE: "{{{{{}}}}}"})
    bob = Recipient.objects.get(message=message, address="b@example.com")
    assert bob.merge_values == {"name": "<Bob>"}
    assert bob.subject == "News for <Bob>"
    assert bob.body() == ("Hi <Bob>", "<p>Hi &lt;Bob&gt;</p>")


def test_without_a_known_spelling_the_values_are_kept_and_the_subject_is_as_sent():
    message = _batch()
    assert message.merge_field is None
    ann = Recipient.objects.get(message=message, address="a@example.com")
    assert ann.merge_values == {"name": "Ann"}
    assert ann.subject == "News for {{name}}"


def test_sensitive_mail_keeps_no_merge_values():
    from wagtail_maillog import label

    msg = EmailMultiAlternatives("Reset", "{{link}}", "site@example.com", ["a@example.com"])
    msg.merge_data = {"a@example.com": {"link": "https://example.com/reset/abc/"}}
    label(msg, sensitive=True)
    msg.send()
    assert Recipient.objects.get().merge_values is None
