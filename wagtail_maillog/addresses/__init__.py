"""Member addresses: their health, suppression at send time, double opt-in."""

from __future__ import annotations


def normalize(address: str) -> str:
    """The form an address is compared in: stripped and lower-cased, as ESPs compare,
    with its domain in Unicode. anymail hands an internationalised domain to the ESP in
    IDNA's ASCII form (``xn--``), and the ESP's webhooks and APIs report it so: both
    forms of one address must meet."""
    address = (address or "").strip().lower()
    if "xn--" in address:
        address = _unicode_domain(address)
    return address


def _unicode_domain(address: str) -> str:
    local, at, domain = address.rpartition("@")
    if not at:
        return address
    labels = []
    for label in domain.split("."):
        if label.startswith("xn--") and len(label) > 4:
            try:
                label = label[4:].encode("ascii").decode("punycode").lower()
            except (UnicodeError, ValueError):  # not IDNA after all: keep it as it came
                return address
        labels.append(label)
    return f"{local}@{'.'.join(labels)}"
