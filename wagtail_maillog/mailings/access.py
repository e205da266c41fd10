"""Who may do what with mailings: compose, send and view results are separate.

* compose: ``add_mailing`` / ``change_mailing`` (draft, preview, test to oneself)
* send: ``send_mailing`` (send, schedule, cancel; preview and test too)
* results: ``view_mailing_results`` (the progress page, "update results")

So an editor drafts and a publisher sends, as in Wagtail's page workflow.
"""

from __future__ import annotations

from typing import Any

from wagtail.permission_policies import ModelPermissionPolicy

COMPOSE = ("wagtail_maillog.add_mailing", "wagtail_maillog.change_mailing")
SEND = "wagtail_maillog.send_mailing"
RESULTS = "wagtail_maillog.view_mailing_results"


def can_compose(user: Any) -> bool:
    return any(user.has_perm(p) for p in COMPOSE)


def can_send(user: Any) -> bool:
    return user.has_perm(SEND)


def can_view_results(user: Any) -> bool:
    return user.has_perm(RESULTS)


def can_preview(user: Any) -> bool:
    return can_compose(user) or can_send(user)


def can_see_mailings(user: Any) -> bool:
    return (
        can_preview(user) or can_view_results(user) or user.has_perm("wagtail_maillog.view_mailing")
    )


class MailingPermissionPolicy(ModelPermissionPolicy):
    """Wagtail's model policy, where sending or viewing results also lets one see the list."""

    def user_has_permission(self, user: Any, action: str) -> bool:
        if action == "view":
            return can_see_mailings(user)
        return super().user_has_permission(user, action)
