"""The models of wagtail-maillog, one module per capability, re-exported here."""

from .addresses import Address, AddressChange, AddressStatus
from .mailings import Mailing, MailingList, MailingListMember, MailingState
from .messages import Event, Message, Recipient, SendAttempt, WebhookRejection
from .outbox import ConnectorState, OutboxItem, OutboxPreference, SendState

__all__ = [
    "Address",
    "AddressChange",
    "AddressStatus",
    "ConnectorState",
    "Event",
    "Mailing",
    "MailingList",
    "MailingListMember",
    "MailingState",
    "Message",
    "OutboxItem",
    "OutboxPreference",
    "Recipient",
    "SendAttempt",
    "SendState",
    "WebhookRejection",
]
