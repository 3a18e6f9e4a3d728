"""Tie a process's life to its parent's (Linux PR_SET_PDEATHSIG)."""

from __future__ import annotations

import ctypes
import os
import signal

PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int, sig: int = signal.SIGTERM) -> None:
    """Get `sig` when the parent exits; exit now if it already has."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, sig)
    except OSError:
        return
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os.kill(os.getpid(), sig)


def die_with_parent_from_env(var: str, sig: int = signal.SIGTERM) -> None:
    value = os.environ.get(var)
    if value and value.isdigit():
        die_with_parent(int(value), sig)
