"""How many recipients one ESP call of a mailing may carry, and how merge fields are spelled.

anymail sends a message with ``merge_data`` as a *batch*: one API call, and
each recipient gets their own copy with their own values. Only some ESPs
fill merge fields in a plain (non-template) body; for them the spelling is
known here. Others (Postmark and Amazon SES need a stored template, SMTP has
no merge at all) get one locally rendered message per recipient.

A batch also needs per-recipient headers (anymail's ``merge_headers``) for each
member's one-click unsubscribe; a backend without them (Mandrill) gets one
rendered message per recipient. A connector can say it itself::

    "newsletter": {"BACKEND": "anymail.backends.mailgun.EmailBackend",
                   "MAILING": {"BATCH_SIZE": 1000, "MERGE_FIELD": "%recipient.{}%",
                               "MERGE_HEADERS": True}}
"""

from __future__ import annotations

from dataclasses import dataclass

from django.utils.module_loading import import_string

from ..conf import get_setting
from ..outbox import connectors

#: ESP backends that merge per-recipient data into a plain body, and their spelling.
MERGE_FIELD_SPELLINGS = {
    "anymail.backends.mailgun.EmailBackend": "%recipient.{}%",
    "anymail.backends.sparkpost.EmailBackend": "{{{{{}}}}}",
    "anymail.backends.mailjet.EmailBackend": "[[var:{}]]",
    "anymail.backends.mandrill.EmailBackend": "*|{}|*",
    "anymail.backends.brevo.EmailBackend": "{{{{params.{}}}}}",
    "anymail.backends.sendinblue.EmailBackend": "{{{{params.{}}}}}",
    "anymail.backends.test.EmailBackend": "{{{{{}}}}}",
    "wagtail_maillog.sandbox.SandboxBackend": "{{{{{}}}}}",
}


#: Of those, the backends that also send per-recipient headers in a batch (anymail's
#: ``merge_headers``): each member's own one-click ``List-Unsubscribe`` (RFC 8058),
#: which Gmail and Yahoo require of bulk mail. A batch is only sent where it can.
MERGE_HEADER_BACKENDS = {
    "anymail.backends.mailgun.EmailBackend",
    "anymail.backends.sparkpost.EmailBackend",
    "anymail.backends.mailjet.EmailBackend",
    "anymail.backends.brevo.EmailBackend",
    "anymail.backends.sendinblue.EmailBackend",
    "anymail.backends.test.EmailBackend",
    "wagtail_maillog.sandbox.SandboxBackend",
}


def sends_merge_headers(backend: str) -> bool:
    """Whether the backend at this path (or one it subclasses) sends ``merge_headers``."""
    if backend in MERGE_HEADER_BACKENDS:
        return True
    try:
        found = import_string(backend)
    except ImportError:
        return False
    for known in MERGE_HEADER_BACKENDS:
        try:
            if issubclass(found, import_string(known)):
                return True
        except (ImportError, TypeError):
            continue
    return False


@dataclass(frozen=True)
class Plan:
    connector: str
    batch_size: int
    merge_field: str | None  # None: render each recipient's copy here

    @property
    def batched(self) -> bool:
        return self.merge_field is not None and self.batch_size > 1


def plan_for(connector: str | None) -> Plan:
    name = connectors.resolve(connector)
    spec = connectors.configured()[name]
    own = spec.get("MAILING", {})
    merge_field = own.get("MERGE_FIELD", MERGE_FIELD_SPELLINGS.get(spec["BACKEND"]))
    if not own.get("MERGE_HEADERS", sends_merge_headers(spec["BACKEND"])):
        merge_field = None  # no one-click unsubscribe per member in a batch: render each
    size = int(own.get("BATCH_SIZE", get_setting("MAILING_BATCH_SIZE")))
    return Plan(name, max(size, 1) if merge_field else 1, merge_field)
