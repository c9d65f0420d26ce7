"""Runs claim themselves: before a compare run starts, its process takes a lock next to the run's
record, ``OUT/runs/<key>.lock`` (created atomically; it holds the holder's host, pid and start time),
and removes it when the record is written. Every other process working on the same folder (a
second command, the workers of ``--jobs``, Ray tasks on a shared folder) skips a run whose holder
is alive, and never writes the record, checkpoint, training state or log of a run it does not hold.

A lock whose holder is gone (a process of this host that no longer exists: killed, crashed, the
machine restarted) is taken over, with a note; the run then resumes from its training state. A
holder on another host cannot be checked from here: its lock is respected until it is removed (the
note says which file). A lock file still being written (empty, for at most ``WRITE_GRACE`` seconds)
counts as held.
"""
from __future__ import annotations

import datetime
import json
import os
import socket
import time
from typing import Any, Callable

WRITE_GRACE = 30.0


def lock_path(out: str, key: str) -> str:
    return os.path.join(out, "runs", key + ".lock")


def _me() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(),
            "started": datetime.datetime.now().isoformat(timespec="seconds")}


def read_holder(path: str) -> dict[str, Any] | None:
    """The holder written in a lock file, or None if it cannot be read (yet)."""
    try:
        with open(path) as f:
            holder = json.load(f)
        return holder if isinstance(holder, dict) and {"host", "pid"} <= set(holder) else None
    except (OSError, ValueError):
        return None


def holder_alive(holder: dict[str, Any]) -> bool:
    """Whether the process holding a lock still exists (always True for another host's process)."""
    if holder["host"] != socket.gethostname():
        return True
    try:
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    return True


def _describe(holder):
    return f"{holder['host']} pid {holder['pid']} since {holder.get('started', '?')}"


class Claim:
    """A held run; ``release`` removes its lock (only if it is still this process's)."""

    def __init__(self, path: str):
        self.path = path

    def release(self) -> None:
        holder = read_holder(self.path)
        if holder is not None and holder["host"] == socket.gethostname() and holder["pid"] == os.getpid():
            try:
                os.remove(self.path)
            except FileNotFoundError:
                pass


def claim(out: str, key: str, log: Callable[[str], None] = print) -> Claim | None:
    """Take the run ``key`` of ``out``: a Claim, or None (with a note) if a live process holds it."""
    path = lock_path(out, key)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = read_holder(path)
            if holder is None:
                try:
                    age = time.time() - os.path.getmtime(path)
                except FileNotFoundError:
                    continue  # released meanwhile: try again
                if age < WRITE_GRACE:
                    log(f"{key}: being claimed by another process (lock {path}): skipped")
                    return None
            elif holder_alive(holder):
                where = "" if holder["host"] == socket.gethostname() else f"; remove {path} if that process is gone"
                log(f"{key}: held by {_describe(holder)}: skipped{where}")
                return None
            if not _take_over(path, holder):
                continue  # another process took it over first: look again
            gone = _describe(holder) if holder else "an unreadable lock"
            log(f"{key}: its holder ({gone}) is gone: taking the run over")
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(_me(), f)
            f.flush()
            os.fsync(f.fileno())
        return Claim(path)
    log(f"{key}: could not claim its lock {path}: skipped")
    return None


def _take_over(path: str, stale: dict[str, Any] | None) -> bool:
    """Move a dead holder's lock aside (atomic rename: one taker wins); True if this process did.
    If what was moved is not the lock judged dead (a new holder got in between), it is put back."""
    aside = f"{path}.gone{os.getpid()}"
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return False
    if read_holder(aside) != stale:
        try:
            os.link(aside, path)  # back, unless someone has created a new lock meanwhile
        except FileExistsError:
            pass
        os.remove(aside)
        return False
    os.remove(aside)
    return True
