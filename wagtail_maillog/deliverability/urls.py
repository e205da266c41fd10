from django.urls import path

from . import views

app_name = "wagtail_maillog_deliverability"
urlpatterns = [
    path("", views.DeliverabilityView.as_view(), name="index"),
    path("csv/", views.DeliverabilityCsvView.as_view(), name="csv"),
]
