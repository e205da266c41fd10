"""The panels a site puts on its own edit views, importable from one place (and from
where ``RelatedMailPanel`` was in 0.1.0). They live beside their capability:
:mod:`wagtail_maillog.log.panels`, :mod:`wagtail_maillog.addresses.panels`."""

from ..addresses.panels import AddressesDashboardPanel, AddressStatusPanel
from ..log.panels import RelatedMailPanel

__all__ = ["AddressStatusPanel", "AddressesDashboardPanel", "RelatedMailPanel"]
