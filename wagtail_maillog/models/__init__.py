"""The models of wagtail-maillog, one module per capability, re-exported here."""

from .addresses import Address, AddressChange, AddressStatus
from .deliverability import METRICS, DailyCount, RollupState
from .mailings import Mailing, MailingList, MailingListMember, MailingState
from .messages import Event, Message, Recipient, SendAttempt, WebhookRejection
from .outbox import ConnectorState, OutboxItem, OutboxPreference, SendState

__all__ = [
    "Address",
    "AddressChange",
    "AddressStatus",
    "ConnectorState",
    "DailyCount",
    "Event",
    "Mailing",
    "MailingList",
    "MailingListMember",
    "MailingState",
    "METRICS",
    "Message",
    "OutboxItem",
    "OutboxPreference",
    "Recipient",
    "RollupState",
    "SendAttempt",
    "SendState",
    "WebhookRejection",
]
