"""anymail's webhook URLs, each behind :func:`wagtail_maillog.webhooks.guard`.

Mount instead of ``anymail.urls``::

    path("anymail/", include("wagtail_maillog.webhook_urls")),

URL names stay anymail's (``anymail:postmark_tracking_webhook``, ...).
"""

from collections.abc import Iterator

from anymail import urls as anymail_urls
from anymail.signals import inbound
from django.urls import NoReverseMatch, URLPattern, reverse

from .webhooks import guard, is_served

app_name = "anymail"

urlpatterns = [
    URLPattern(p.pattern, guard(p.callback), p.default_args, p.name)
    for p in anymail_urls.urlpatterns
    if isinstance(p, URLPattern)
]


def served_tracking() -> Iterator[tuple[URLPattern, str]]:
    """(pattern, path) of each tracking URL that answers and is mounted (reversible),
    the first per ESP: what the system checks and the Webhooks page look at."""
    seen: set[str] = set()
    for pattern in urlpatterns:
        view_class = pattern.callback.view_class
        if view_class.esp_name in seen or view_class.signal is inbound:
            continue
        if not is_served(view_class):
            continue
        try:
            path = reverse(f"anymail:{pattern.name}")
        except NoReverseMatch:
            continue  # not mounted, or needs an argument (no tracking URL does)
        seen.add(view_class.esp_name)
        yield pattern, path
