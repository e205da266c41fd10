"""Kept so that ``from wagtail_maillog.admin.panels import RelatedMailPanel`` (0.1.0)
still works: the panel lives in :mod:`wagtail_maillog.log.panels`."""

from ..log.panels import RelatedMailPanel

__all__ = ["RelatedMailPanel"]
