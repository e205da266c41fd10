"""The Addresses pages, mounted at ``<admin>/maillog/addresses/`` by wagtail_hooks."""

from django.urls import path

from . import views

app_name = "wagtail_maillog_addresses"
urlpatterns = [
    path("", views.AddressIndexView.as_view(), name="index"),
    path("results/", views.AddressIndexView.as_view(results_only=True), name="index_results"),
    path("resend/", views.ResendUnansweredView.as_view(), name="resend"),
    path("send/", views.SendRequestView.as_view(), name="send"),
    path("<int:pk>/", views.AddressDetailView.as_view(), name="detail"),
    path("<int:pk>/clear/", views.ClearProblemView.as_view(), name="clear"),
]
