"""Child processes of the tests: django-q2 clusters, servers."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from typing import Any


def stop_process_group(process: subprocess.Popen, timeout: float = 60) -> Any:
    """Stop a process started in its own group (a django-q2 cluster, a server); its
    output, when piped.

    SIGTERM to the main process only: a cluster's Sentinel then lets its workers
    finish, stores their results and stops its children in order. (A SIGTERM to the
    whole group stopped the children under it, and the cluster hung "stopping."
    until it was killed.) Whatever is left of the group is killed after it.
    """
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        output = process.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        output = None
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    if output is None:
        output = process.communicate(timeout=10)[0]
    return output
