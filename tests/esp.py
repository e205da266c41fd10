"""A scripted ESP for outbox tests: anymail's test backend that fails on cue."""

from __future__ import annotations

import os
import time
from typing import Any, ClassVar

from anymail.backends.test import EmailBackend as AnymailTestBackend


class ScriptedBackend(AnymailTestBackend):
    """Pops one outcome per message from ``script``: None sends, an exception raises.

    ``calls`` lists the subjects of every message it was asked to send (even
    failed ones): the ESP's view of how often each message came.
    """

    esp_name = "Scripted"
    script: ClassVar[list[Any]] = []
    calls: ClassVar[list[str]] = []

    def post_to_esp(self, payload: Any, message: Any) -> Any:
        ScriptedBackend.calls.append(message.subject)
        delay = float(os.environ.get("MAILLOG_TEST_ESP_DELAY", "0"))
        if delay:
            marker = os.environ.get("MAILLOG_TEST_ESP_MARKER")
            if marker:
                with open(marker, "a") as f:
                    f.write(f"{message.subject}\n")
            time.sleep(delay)
        outcome = ScriptedBackend.script.pop(0) if ScriptedBackend.script else None
        if isinstance(outcome, BaseException):
            raise outcome
        return super().post_to_esp(payload, message)
