"""How many recipients one ESP call of a mailing may carry, and how merge fields are spelled.

anymail sends a message with ``merge_data`` as a *batch*: one API call, and
each recipient gets their own copy with their own values. Only some ESPs
fill merge fields in a plain (non-template) body; for them the spelling is
known here. Others (Postmark and Amazon SES need a stored template, SMTP has
no merge at all) get one locally rendered message per recipient.

A connector can say it itself::

    "newsletter": {"BACKEND": "anymail.backends.mailgun.EmailBackend",
                   "MAILING": {"BATCH_SIZE": 1000, "MERGE_FIELD": "%recipient.{}%"}}
"""

from __future__ import annotations

from dataclasses import dataclass

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
    size = int(own.get("BATCH_SIZE", get_setting("MAILING_BATCH_SIZE")))
    return Plan(name, max(size, 1) if merge_field else 1, merge_field)
