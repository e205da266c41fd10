"""Public pages (no login): mount in the site's urls.py::

path("mail/", include("wagtail_maillog.public_urls")),
"""

from django.urls import path

from .addresses.public_views import confirm_view
from .mailings.public_views import one_click_view, unsubscribe_view

app_name = "wagtail_maillog_public"
urlpatterns = [
    path("confirm/<str:token>/", confirm_view, name="confirm"),
    path("unsubscribe/<str:token>/", unsubscribe_view, name="unsubscribe"),
    path("unsubscribe/<str:token>/one-click/", one_click_view, name="unsubscribe_one_click"),
]
