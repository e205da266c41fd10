"""Tell the log where a message comes from, what it is about, and who sent it.

Two ways, both optional; what is said on the message wins over the context::

    from wagtail_maillog import label, mail_context

    msg = EmailMessage(...)
    label(msg, source="invoice", related=invoice, user=request.user)
    msg.send()

    with mail_context(source="form", related=form_page):
        send_mail(...)          # any mail sent inside the block

Mail that nobody labelled gets its source from the code that sent it
(Wagtail's notifications: see ``SYSTEM_SOURCES``) or ``DEFAULT_SOURCE``, and
counts as system-generated when no user is known. A password reset is told by
Django's form itself (:func:`password_reset_account`), never by the request's
user: it belongs to the account it is about.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, fields, replace
from functools import cache
from typing import Any

from .conf import get_setting

ATTRIBUTE = "maillog"
#: The attribute of an ``EmailMessage`` that holds the pk of its Message row.
PK_ATTRIBUTE = "_maillog_pk"
#: Set by the outbox worker: the SendAttempt row of the hand-over in progress.
ATTEMPT_ATTRIBUTE = "_maillog_attempt_pk"


@dataclass(frozen=True)
class MailLabel:
    """What the application says about a message; None means "not said"."""

    source: str | None = None
    related: Any = None
    user: Any = None
    team: Any = None
    system: bool | None = None
    importance: str | None = None
    store_body: bool | None = None
    connector: str | None = None
    send_at: Any = None  # an aware datetime: the outbox holds the mail until then
    undo_seconds: int | None = None  # the outbox's undo-send delay for this mail
    suppress: bool | None = None  # False: send even to addresses with a problem status
    sensitive: bool | None = None  # True: carries a credential, never stored with its body

    def merged_over(self, other: MailLabel) -> MailLabel:
        """This label, with the gaps filled from ``other``."""
        if other is _NO_LABEL or self is _NO_LABEL:  # the common cases, once per mail sent
            return other if self is _NO_LABEL else self
        values = {
            f.name: getattr(other, f.name) for f in fields(self) if getattr(self, f.name) is None
        }
        return replace(self, **values)


_NO_LABEL = MailLabel()
_current: ContextVar[MailLabel] = ContextVar("wagtail_maillog_label", default=_NO_LABEL)


def label(message: Any, **kwargs: Any) -> Any:
    """Attach a :class:`MailLabel` to an ``EmailMessage``; returns the message."""
    existing = getattr(message, ATTRIBUTE, None) or MailLabel()
    setattr(message, ATTRIBUTE, MailLabel(**kwargs).merged_over(existing))
    return message


@contextmanager
def mail_context(**kwargs: Any) -> Iterator[MailLabel]:
    """Label every message sent inside the block (nests; inner values win)."""
    token = _current.set(MailLabel(**kwargs).merged_over(_current.get()))
    try:
        yield _current.get()
    finally:
        _current.reset(token)


def current_user_context(user: Any) -> Any:
    """Set the user of the running request (used by ``MailLogUserMiddleware``)."""
    return _current.set(MailLabel(user=user).merged_over(_current.get()))


def reset_context(token: Any) -> None:
    _current.reset(token)


def label_for(message: Any) -> MailLabel:
    """The label that applies to ``message``: its own, then the context's."""
    own = getattr(message, ATTRIBUTE, None) or _NO_LABEL
    return own.merged_over(_current.get())


def source_from_stack(max_depth: int = 60) -> str | None:
    """The source of the first ``SYSTEM_SOURCES`` entry that matches a caller.

    Lets mail sent by Django and Wagtail themselves (password reset,
    moderation notifications) be labelled without touching their code.
    """
    modules = set()
    frame = sys._getframe(1)
    for _depth in range(max_depth):
        if frame is None:
            break
        modules.add(frame.f_globals.get("__name__", ""))
        frame = frame.f_back
    for prefix, source in get_setting("SYSTEM_SOURCES"):
        if any(m == prefix or m.startswith(prefix + ".") for m in modules):
            return source
    return None


#: The source of Django's and Wagtail's password reset mail.
PASSWORD_RESET = "password_reset"


@dataclass(frozen=True)
class PasswordReset:
    """A password reset mail being sent, and the account it is about."""

    account: Any


@cache
def _reset_form() -> type:
    from django.contrib.auth.forms import PasswordResetForm

    return PasswordResetForm


def password_reset_account(max_depth: int = 60) -> PasswordReset | None:
    """The password reset in progress on this thread's stack, if one is.

    Django's ``PasswordResetForm.send_mail`` (Wagtail's form is a subclass) sends
    each reset mail with the account in ``context["user"]``: that exact frame, a
    ``send_mail`` method of such a form, marks a reset; other code of
    ``django.contrib.auth`` on the stack (``login_required``...) does not.
    """
    form = _reset_form()
    frame = sys._getframe(1)
    for _depth in range(max_depth):
        if frame is None:
            return None
        if frame.f_code.co_name == "send_mail" and isinstance(frame.f_locals.get("self"), form):
            context = frame.f_locals.get("context")
            return PasswordReset(context.get("user") if isinstance(context, dict) else None)
        frame = frame.f_back
    return None
