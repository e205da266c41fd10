"""Models the tests relate mail to (an invoice, as in the seeds)."""

from django.db import models
from wagtail.fields import RichTextField
from wagtail.models import Page


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
