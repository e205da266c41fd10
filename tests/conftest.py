import base64

import pytest
from django.core import mail


@pytest.fixture(autouse=True)
def _empty_outbox(settings):
    mail.outbox = []
    settings.EMAIL_BACKEND = "anymail.backends.test.EmailBackend"


@pytest.fixture
def webhook_auth():
    """HTTP basic auth header for ANYMAIL["WEBHOOK_SECRET"] of tests/settings.py."""
    token = base64.b64encode(b"hook:secret").decode()
    return {"HTTP_AUTHORIZATION": f"Basic {token}"}
