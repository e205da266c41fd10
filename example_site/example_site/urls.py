from django.conf import settings
from django.urls import include, path
from wagtail import urls as wagtail_urls
from wagtail.admin import urls as wagtailadmin_urls
from wagtail.documents import urls as wagtaildocs_urls

urlpatterns = [
    path("admin/", include(wagtailadmin_urls)),
    path("documents/", include(wagtaildocs_urls)),
    # ESP webhooks (anymail's views, guarded by wagtail-maillog), e.g.
    # /anymail/postmark/tracking/ with basic auth ANYMAIL["WEBHOOK_SECRET"].
    path("anymail/", include("wagtail_maillog.webhook_urls")),
    path("mail/", include("wagtail_maillog.public_urls")),  # confirmation links
]

if settings.DEBUG:
    from django.conf.urls.static import static

    urlpatterns += static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)

urlpatterns += [
    # Wagtail serves everything else; keep last.
    path("", include(wagtail_urls)),
]
