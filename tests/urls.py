from django.contrib.auth.decorators import login_required
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


@login_required
def send_mail_signed_in(request: HttpRequest) -> HttpResponse:
    """Sends one mail from a view of a signed-in user (``django.contrib.auth`` on the stack)."""
    send_mail("Signed in", "Body", "site@example.com", ["someone@example.com"])
    return HttpResponse("sent")


urlpatterns = [
    path("admin/", include(wagtailadmin_urls)),
    path("anymail/", include("wagtail_maillog.webhook_urls")),
    path("send-test-mail/", send_test_mail),
    path("send-mail-signed-in/", send_mail_signed_in),
    path("mail/", include("wagtail_maillog.public_urls")),
    path("", include(wagtail_urls)),
]
