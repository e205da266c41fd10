"""anymail's webhook URLs, each behind :func:`wagtail_maillog.webhooks.guard`.

Mount instead of ``anymail.urls``::

    path("anymail/", include("wagtail_maillog.webhook_urls")),

URL names stay anymail's (``anymail:postmark_tracking_webhook``, ...).
"""

from anymail import urls as anymail_urls
from django.urls import URLPattern

from .webhooks import guard

app_name = "anymail"

urlpatterns = [
    URLPattern(p.pattern, guard(p.callback), p.default_args, p.name)
    for p in anymail_urls.urlpatterns
    if isinstance(p, URLPattern)
]
