"""Kept so that ``from wagtail_maillog.admin.address_panels import AddressStatusPanel``
(0.1.0) still works: the panels live in :mod:`wagtail_maillog.addresses.panels`."""

from ..addresses.panels import AddressesDashboardPanel, AddressStatusPanel

__all__ = ["AddressStatusPanel", "AddressesDashboardPanel"]
