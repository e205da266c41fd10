from django.urls import path

from . import views

app_name = "wagtail_maillog_outbox"
urlpatterns = [
    path("", views.OutboxIndexView.as_view(), name="index"),
    path("results/", views.OutboxIndexView.as_view(results_only=True), name="index_results"),
    path("<int:pk>/", views.OutboxDetailView.as_view(), name="detail"),
    path("<int:pk>/quick/", views.OutboxQuickView.as_view(), name="quick_view"),
    path("<int:pk>/retry/", views.OutboxRetryView.as_view(), name="retry"),
    path("<int:pk>/cancel/", views.OutboxCancelView.as_view(), name="cancel"),
    path("connectors/", views.ConnectorsView.as_view(), name="connectors"),
    path(
        "connectors/<str:name>/enable/",
        views.ConnectorToggleView.as_view(enable=True),
        name="connector_enable",
    ),
    path(
        "connectors/<str:name>/disable/",
        views.ConnectorToggleView.as_view(enable=False),
        name="connector_disable",
    ),
]
