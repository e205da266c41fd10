"""Public pages (no login): mount in the site's urls.py::

path("mail/", include("wagtail_maillog.public_urls")),
"""

from django.urls import path

from .addresses.views import confirm_view

app_name = "wagtail_maillog_public"
urlpatterns = [
    path("confirm/<str:token>/", confirm_view, name="confirm"),
]
