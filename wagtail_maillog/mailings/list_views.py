"""Mailing lists: Wagtail's model views for named lists of addresses (an audience each)."""

from __future__ import annotations

from django.db.models import Count, QuerySet
from django.utils.translation import gettext_lazy as _
from wagtail.admin.panels import FieldPanel, InlinePanel
from wagtail.admin.ui.tables import Column
from wagtail.admin.views.generic import IndexView
from wagtail.admin.viewsets.model import ModelViewSet

from ..admin.menu import MAIL_MENU_HOOK
from ..models import MailingList


class MailingListIndexView(IndexView):
    def get_base_queryset(self) -> QuerySet[MailingList]:
        return super().get_base_queryset().annotate(entry_count=Count("entries"))


class MailingListViewSet(ModelViewSet):
    model = MailingList
    icon = "list-ul"
    menu_label = _("Mailing lists")
    menu_name = "mailing-lists"
    menu_order = 410
    menu_hook = MAIL_MENU_HOOK
    url_prefix = "maillog/lists"
    url_namespace = "wagtail_maillog_lists"
    index_view_class = MailingListIndexView
    search_fields = ["name", "description"]
    list_display = ["name", Column("entry_count", label=_("Addresses")), "description"]
    panels = [
        FieldPanel("name"),
        FieldPanel("description"),
        InlinePanel("entries", heading=_("Addresses"), label=_("Address")),
    ]
