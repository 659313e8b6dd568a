"""Who holds a claim on a queue entry, and whether that process is still alive (portable).

An owner id is ``host:pid:start:token``: the host name, the process id, the process's start time when the
platform gives it (Linux ``/proc/<pid>/stat``; empty elsewhere) and a random token per queue instance.
A claim whose owner process is known to be dead (``kill -9``, crash) is treated as expired at once
instead of waiting for its lease; any doubt (another host, a pid we may not inspect, a pid reused by a
process started at the same tick) keeps the claim until its lease expires — the safe side: an entry is
never sent by two live processes, a dead owner only costs time.

[I] Why a liveness check rather than a heartbeat: a heartbeat needs a thread writing the queue file
while a send is in flight (and a full disk stops the heartbeat, which would hand a live send to another
process); a pid check needs no write and no thread, and is portable with the standard library: POSIX
``os.kill(pid, 0)``, Windows ``OpenProcess`` + ``GetExitCodeProcess`` through ctypes.
"""

from __future__ import annotations

import os
import socket
import sys
import uuid

_STILL_ACTIVE = 259
_PROCESS_QUERY_LIMITED_INFORMATION = 0x1000
_ERROR_ACCESS_DENIED = 5


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot (Linux); "" when unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return ""
    # the command name (field 2) is in parentheses and may contain spaces: split after its last ")"
    fields = raw[raw.rfind(b")") + 2 :].split()
    return fields[19].decode() if len(fields) > 19 else ""  # field 22 of stat(5)


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return False
    fields = raw[raw.rfind(b")") + 2 :].split()
    return bool(fields) and fields[0] in (b"Z", b"X")


def new_owner_id() -> str:
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_start_time(pid)}:{uuid.uuid4().hex[:12]}"


def _alive_windows(pid: int) -> bool:
    import ctypes

    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined,unused-ignore]
    kernel32.OpenProcess.restype = ctypes.c_void_p  # a HANDLE is pointer-sized
    kernel32.OpenProcess.argtypes = [ctypes.c_ulong, ctypes.c_int, ctypes.c_ulong]
    kernel32.GetExitCodeProcess.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_ulong)]
    kernel32.CloseHandle.argtypes = [ctypes.c_void_p]
    handle = kernel32.OpenProcess(_PROCESS_QUERY_LIMITED_INFORMATION, False, pid)
    if not handle:
        # access denied: it exists (another user's process); anything else: no such process
        return bool(ctypes.get_last_error() == _ERROR_ACCESS_DENIED)  # type: ignore[attr-defined,unused-ignore]
    try:
        code = ctypes.c_ulong(0)
        if not kernel32.GetExitCodeProcess(handle, ctypes.byref(code)):
            return True
        return code.value == _STILL_ACTIVE
    finally:
        kernel32.CloseHandle(handle)


def _alive_posix(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return True
    return not _zombie(pid)


def owner_alive(owner: str) -> bool:
    """True only when ``owner`` certainly names a live process of this machine (this one included)."""
    parts = owner.split(":")
    if len(parts) != 4 or parts[0] != socket.gethostname():
        return False
    try:
        pid = int(parts[1])
    except ValueError:
        return False
    if pid == os.getpid():
        return True
    return pid > 0 and _probably_alive(pid) and not owner_dead(owner)  # not a reused pid


def _probably_alive(pid: int) -> bool:
    try:
        return _alive_windows(pid) if sys.platform == "win32" else _alive_posix(pid)
    except Exception:
        return False


def owner_dead(owner: str) -> bool:
    """True only when ``owner`` (an id from ``new_owner_id``) certainly names a process that ended."""
    parts = owner.split(":")
    if len(parts) != 4 or parts[0] != socket.gethostname():
        return False  # former ids, another machine: only the lease tells
    try:
        pid = int(parts[1])
    except ValueError:
        return False
    if pid <= 0:
        return False
    if pid == os.getpid():
        return False  # this process: another queue instance here may be sending it
    try:
        alive = _alive_windows(pid) if sys.platform == "win32" else _alive_posix(pid)
    except Exception:
        return False
    if not alive:
        return True
    start = parts[2]
    if start and sys.platform != "win32":
        now = _start_time(pid)
        if now and now != start:
            return True  # the pid was reused by a later process: the owner ended
    return False
