import base64

import pytest
from django.core import mail
from django.core.cache import cache


@pytest.fixture(autouse=True)
def _empty_outbox(settings):
    mail.outbox = []
    cache.clear()  # rate-limit counters and the outbox wake flag start fresh
    from wagtail_maillog.outbox import worker

    worker.forget_wake()  # and this process's memory of its last wake-up
    settings.EMAIL_BACKEND = "anymail.backends.test.EmailBackend"


@pytest.fixture
def webhook_auth():
    """HTTP basic auth header for ANYMAIL["WEBHOOK_SECRET"] of tests/settings.py."""
    token = base64.b64encode(b"hook:secret").decode()
    return {"HTTP_AUTHORIZATION": f"Basic {token}"}
