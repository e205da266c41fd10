from django.db import models
from django.utils import timezone


class Member(models.Model):
    """A club member: the kind of record a site mails (and the log links to)."""

    name = models.CharField(max_length=255)
    email = models.EmailField(unique=True)
    joined = models.DateField(default=timezone.localdate)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
