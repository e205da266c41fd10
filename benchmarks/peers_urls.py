"""URLs of the side-by-side benchmark, by side (``benchmarks.peer_settings``).

``ours``: the tests' URLs (Wagtail's admin with the mail log, our guarded
webhooks under ``/anymail/``) and Django's admin at ``/django-admin/`` for
django-post_office's changelist. The peers' sides: anymail's own webhook
URLs under ``/anymail/`` (anymail-history's receivers, or none), and Django's
admin.
"""

from django.conf import settings
from django.contrib import admin
from django.urls import include, path

if settings.SIDE in ("ours", "all"):
    from tests.urls import urlpatterns as _ours

    urlpatterns = [path("django-admin/", admin.site.urls), *_ours]
else:
    urlpatterns = [
        path("django-admin/", admin.site.urls),
        path("anymail/", include("anymail.urls")),
    ]
