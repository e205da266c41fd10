from django.core.mail import send_mail
from django.http import HttpRequest, HttpResponse
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt
from wagtail import urls as wagtail_urls
from wagtail.admin import urls as wagtailadmin_urls


@csrf_exempt
def send_test_mail(request: HttpRequest) -> HttpResponse:
    """Sends one mail inside a request, as application code would."""
    send_mail("From a view", "Body", "site@example.com", ["someone@example.com"])
    return HttpResponse("sent")


urlpatterns = [
    path("admin/", include(wagtailadmin_urls)),
    path("anymail/", include("wagtail_maillog.webhook_urls")),
    path("send-test-mail/", send_test_mail),
    path("mail/", include("wagtail_maillog.public_urls")),
    path("", include(wagtail_urls)),
]
