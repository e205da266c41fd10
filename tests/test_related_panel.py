"""The mails of an object: the template tag and the Wagtail panel."""

import pytest
from django.contrib.auth.models import AnonymousUser, User
from django.core.mail import EmailMessage
from django.template import Context, Template
from django.test import RequestFactory

from tests.testapp.models import Invoice
from wagtail_maillog import label
from wagtail_maillog.log.panels import RelatedMailPanel

pytestmark = pytest.mark.django_db


@pytest.fixture
def invoice():
    invoice = Invoice.objects.create(number="12")
    for subject in ("Invoice 12", "<b>Reminder</b>"):
        msg = EmailMessage(subject, "b", "a@example.com", ["payer@example.com"])
        label(msg, related=invoice)
        msg.send()
    other = EmailMessage("Unrelated", "b", "a@example.com", ["x@example.com"])
    other.send()
    return invoice


def request_for(user):
    request = RequestFactory().get("/")
    request.user = user
    return request


def render_tag(obj, user):
    template = Template("{% load maillog_tags %}{% related_mails obj %}")
    return template.render(Context({"obj": obj, "request": request_for(user)}))


def test_tag_lists_the_objects_mails_with_status(invoice):
    admin = User.objects.create_superuser("admin", "a@example.com", "pw")
    html = render_tag(invoice, admin)
    assert "Invoice 12" in html and "&lt;b&gt;Reminder&lt;/b&gt;" in html
    assert "Unrelated" not in html
    assert 'data-status="sent"' in html
    assert f"related_id={invoice.pk}" in html


def test_tag_shows_nothing_to_users_without_permission(invoice):
    assert "Invoice 12" not in render_tag(invoice, AnonymousUser())
    plain = User.objects.create_user("plain", "p@example.com", "pw")
    assert "Invoice 12" not in render_tag(invoice, plain)


def test_panel_in_an_edit_form(invoice):
    admin = User.objects.create_superuser("admin", "a@example.com", "pw")
    panel = RelatedMailPanel(limit=1).bind_to_model(Invoice)
    bound = panel.get_bound_panel(instance=invoice, request=request_for(admin), form=None)
    assert bound.is_shown()
    html = bound.render_html()
    assert html.count("data-status=") == 1  # limited to the newest one
    assert "All mail about this in the mail log" in html
    new = panel.get_bound_panel(
        instance=Invoice(number="new"), request=request_for(admin), form=None
    )
    assert not new.is_shown()
