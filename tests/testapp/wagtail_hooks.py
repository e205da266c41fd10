from wagtail import hooks
from wagtail.snippets.models import register_snippet

from wagtail_maillog.mailings.audiences import QuerySetAudience

from .models import Member, Ticket

register_snippet(Ticket)


@hooks.register("register_maillog_audience")
def members_audience() -> QuerySetAudience:
    return QuerySetAudience(
        "members", "All members", lambda: Member.objects.all(), name_field="name"
    )
