from django.urls import path

from . import views, webhook_views

app_name = "wagtail_maillog"
urlpatterns = [
    path("", views.MailLogIndexView.as_view(), name="index"),
    path("results/", views.MailLogIndexView.as_view(results_only=True), name="index_results"),
    path("<int:pk>/", views.MessageDetailView.as_view(), name="detail"),
    path("webhooks/", webhook_views.WebhookHealthView.as_view(), name="webhooks"),
    path("<int:pk>/resend/", views.ResendView.as_view(), name="resend"),
    path("<int:pk>/cancel/", views.CancelView.as_view(), name="cancel"),
    path(
        "related/<int:content_type_id>/<str:object_id>/",
        views.related_object_view,
        name="related",
    ),
]
