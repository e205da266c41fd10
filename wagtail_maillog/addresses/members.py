"""Tell wagtail-maillog which model holds your members and which field their address.

    # members/apps.py
    def ready(self):
        from wagtail_maillog.addresses import members
        members.register(Member, email_field="email")

Then a member's address status shows on its edit view (``AddressStatusPanel``),
changing a member's address starts the new one as unconfirmed, and mailings
can target confirmed members only (:func:`confirmed`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import Model, QuerySet
from django.db.models.functions import Lower, Trim
from django.db.models.signals import post_save, pre_save
from django.utils.translation import gettext as _

from .. import keyset
from . import normalize


@dataclass(frozen=True)
class MemberModel:
    model: type[Model]
    email_field: str


_registry: dict[type[Model], MemberModel] = {}


def register(model: type[Model], email_field: str = "email") -> None:
    """Make ``model`` a member model whose ``email_field`` holds the address."""
    _registry[model] = MemberModel(model, email_field)
    pre_save.connect(_remember_old, sender=model, dispatch_uid=f"maillog-old-{model._meta}")
    post_save.connect(_on_saved, sender=model, dispatch_uid=f"maillog-new-{model._meta}")


def registered() -> list[MemberModel]:
    return list(_registry.values())


def address_of(member: Model) -> str:
    spec = _registry.get(type(member))
    return normalize(getattr(member, spec.email_field, "") or "") if spec else ""


def member_for(address: str) -> Model | None:
    """The first registered member with this address, if any."""
    for spec in _registry.values():
        found = spec.model._default_manager.filter(
            **{f"{spec.email_field}__iexact": normalize(address)}
        ).first()
        if found is not None:
            return found
    return None


def confirmed(model: type[Model]) -> QuerySet[Any]:
    """Members of ``model`` whose address is confirmed (and so has no problem)."""
    from ..models import Address, AddressStatus

    spec = _registry[model]
    good = Address.objects.filter(status=AddressStatus.CONFIRMED).values("address")
    return model._default_manager.annotate(_maillog_address=Lower(Trim(spec.email_field))).filter(
        _maillog_address__in=good
    )


def sync(chunk: int = 2000) -> int:
    """Give every registered member's address a row (for members made before installing)."""
    from .health import ensure

    made = 0
    for spec in _registry.values():
        # Keyset pages, not one open cursor: ensure() writes between the pages.
        for page in keyset.pages(spec.model._default_manager.all(), chunk, spec.email_field):
            made += len(ensure([address for _pk, address in page]))
    return made


def _remember_old(sender: type[Model], instance: Model, **kwargs: Any) -> None:
    if instance.pk is None:
        instance._maillog_old_address = ""
        return
    spec = _registry[sender]
    old = sender._default_manager.filter(pk=instance.pk).values_list(spec.email_field, flat=True)
    instance._maillog_old_address = normalize(old.first() or "")


def _on_saved(sender: type[Model], instance: Model, created: bool, **kwargs: Any) -> None:
    from ..models import AddressStatus
    from .health import ensure, set_status

    new = address_of(instance)
    old = getattr(instance, "_maillog_old_address", "")
    if not new or new == old:
        return
    from ..models import Address

    if created or not old:
        ensure([new])
        return
    # Links sent to either address before the change must not confirm anything now.
    Address.objects.filter(address__in=[old, new]).update(nonce="")
    set_status(
        [
            (
                new,
                AddressStatus.UNCONFIRMED,
                _("The member's address changed from %(old)s") % {"old": old},
            )
        ]
    )
