"""Models the tests relate mail to (an invoice, as in the seeds)."""

from django.db import models
from wagtail.admin.panels import FieldPanel
from wagtail.fields import RichTextField
from wagtail.models import Page

from wagtail_maillog.log.panels import RelatedMailPanel


class Invoice(models.Model):
    number = models.CharField(max_length=20)

    def __str__(self) -> str:
        return f"Invoice {self.number}"


class Member(models.Model):
    """A site's own member model, registered with wagtail-maillog in apps.py."""

    name = models.CharField(max_length=100)
    email = models.EmailField(blank=True)

    def __str__(self) -> str:
        return self.name


class NewsPage(Page):
    """A page a mailing can send as its body."""

    body = RichTextField(blank=True)
    content_panels = [*Page.content_panels, "body"]


class Ticket(models.Model):
    """A snippet (registered in wagtail_hooks.py) whose edit view lists its mail."""

    subject = models.CharField(max_length=100)

    panels = [FieldPanel("subject"), RelatedMailPanel()]

    def __str__(self) -> str:
        return self.subject


class LetterPage(Page):
    """A page whose edit view lists the mail about it."""

    content_panels = [*Page.content_panels, RelatedMailPanel()]
