"""The models of wagtail-maillog, one module per capability, re-exported here."""

from .messages import Event, Message, Recipient, SendAttempt

__all__ = ["Event", "Message", "Recipient", "SendAttempt"]
