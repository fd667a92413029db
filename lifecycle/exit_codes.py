"""Exit codes shared by the node runtime and what schedules it (torch-free, so the control plane
can render them into Job specs without importing the runtime)."""

from __future__ import annotations

import signal

REQUEUE_EXIT_CODE = 128 + signal.SIGTERM
"""143: the runtime saved and stopped on request (the shell's code for "terminated by SIGTERM")."""
