"""Member addresses: their health, suppression at send time, double opt-in."""

from __future__ import annotations


def normalize(address: str) -> str:
    """The form an address is compared in: stripped and lower-cased, as ESPs compare."""
    return (address or "").strip().lower()
