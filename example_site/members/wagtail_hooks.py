from wagtail import hooks
from wagtail.admin.panels import FieldPanel
from wagtail.snippets.models import register_snippet
from wagtail.snippets.views.snippets import SnippetViewSet

from wagtail_maillog.addresses.panels import AddressStatusPanel
from wagtail_maillog.log.panels import RelatedMailPanel
from wagtail_maillog.mailings.audiences import QuerySetAudience

from .models import Member


class MemberViewSet(SnippetViewSet):
    model = Member
    icon = "user"
    menu_label = "Members"
    menu_order = 200
    add_to_admin_menu = True
    list_display = ["name", "email", "joined"]
    list_filter = ["joined"]
    search_fields = ["name", "email"]
    search_backend_name = None  # plain database lookups; no search index to keep
    ordering = ["name"]
    panels = [
        FieldPanel("name"),
        FieldPanel("email"),
        FieldPanel("joined"),
        AddressStatusPanel(),
        RelatedMailPanel(heading="Mail to and about this member"),
    ]


register_snippet(MemberViewSet)


@hooks.register("register_maillog_audience")
def members_audience() -> QuerySetAudience:
    """Mailings can go to every member (the confirmed ones with a healthy address)."""
    return QuerySetAudience(
        "members",
        "All members",
        lambda: Member.objects.all(),
        email_field="email",
        name_field="name",
        description="Everyone in the member register.",
    )
