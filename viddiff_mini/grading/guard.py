"""An audit hook in the answer's process that reports crude misbehaviour as a violation.

``viddiff grade`` loads a submission only in its worker process (:mod:`.worker`), inside
the OS sandbox of :mod:`.sandbox`: that sandbox is what keeps the submission away from the
grader, other submissions and the network. This hook, installed in the worker before the
answer is loaded (``--guard DIR``), adds an explanation: the crude ways to misbehave raise
``PermissionError`` *and* are recorded, and the judge turns the test that tried into the
outcome "violation":

* opening a file for writing, creating, removing, renaming, linking or chmod-ing a path
  outside the allowed folders (the worker's private temp folder);
* starting a process (``subprocess``, ``os.system``, ``os.fork``, ``os.exec*``, ...);
* sending a signal to another process; network use (``connect``, ``bind``, ``sendto``,
  ``sendmsg``).

It sees only what goes through Python (not ``ctypes``), and code in the same process can
hide its violations from the report: it is a diagnostic, not a security boundary. There is
no way to switch it off from inside the process (no exemption): the worker itself writes
nothing but its pipe.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

# audit event -> indices of its path arguments that get written (see the "Audit events
# table" of the Python docs). dir_fd arguments follow in the same tuple where they exist.
_PATH_EVENTS: dict[str, tuple[int, ...]] = {
    "os.remove": (0,), "os.rmdir": (0,), "os.mkdir": (0,), "os.chmod": (0,),
    "os.chown": (0,), "os.truncate": (0,), "os.utime": (0,), "os.mkfifo": (0,),
    "os.mknod": (0,), "os.setxattr": (0,), "os.removexattr": (0,), "os.chflags": (0,),
    "os.lchflags": (0,), "os.rename": (0, 1), "os.link": (0, 1), "os.symlink": (1,),
    "shutil.rmtree": (0,), "shutil.copyfile": (1,), "shutil.copytree": (1,),
    "shutil.copymode": (1,), "shutil.copystat": (1,), "shutil.move": (0, 1),
    "shutil.chown": (0,), "shutil.unpack_archive": (1,),
}
_DIR_FD_ARG = {"os.remove": 1, "os.rmdir": 1, "os.mkdir": 2, "os.chmod": 2, "os.chown": 3,
               "os.utime": 3, "os.mkfifo": 2, "os.mknod": 3, "os.symlink": 2,
               "shutil.rmtree": 1}
_SPAWN_EVENTS = {"subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn",
                 "os.fork", "os.forkpty", "pty.spawn", "os.startfile"}
_NET_EVENTS = {"socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg"}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


class WriteGuard:
    """The audit hook. ``allowed``: folders (and files) that may be written."""

    def __init__(self, allowed: list[str | os.PathLike]):
        self.allowed = [os.path.realpath(p) for p in allowed] + [os.devnull]
        self.violations: list[str] = []  # one line per refused operation, in order
        self._local = threading.local()

    # ------------------------------------------------------------------ helpers
    def _inside(self, real: str) -> bool:
        return any(real == a or real.startswith(a.rstrip(os.sep) + os.sep)
                   for a in self.allowed)

    @staticmethod
    def _resolve(path, dir_fd=None) -> str | None:
        """Absolute real path, or None for an already open file descriptor (allowed: the
        open that made it was checked)."""
        if isinstance(path, int):
            return None
        path = os.fsdecode(os.fspath(path))
        if not os.path.isabs(path):
            base = os.getcwd()
            if isinstance(dir_fd, int) and dir_fd >= 0:
                base = os.readlink(f"/proc/self/fd/{dir_fd}")
            path = os.path.join(base, path)
        return os.path.realpath(path)

    def _refuse(self, what: str) -> None:
        self.violations.append(what)
        raise PermissionError(f"grading sandbox: {what} is not allowed while grading")

    # ------------------------------------------------------------------ the hook
    def __call__(self, event: str, args: tuple) -> None:
        if event == "open":
            mode, flags = args[1], args[2]
            if isinstance(mode, str):
                if not any(c in mode for c in "wax+"):
                    return
            elif not (flags or 0) & _WRITE_FLAGS:
                return
            paths: tuple = ((args[0], None),)
        elif event in _PATH_EVENTS:
            fd_i = _DIR_FD_ARG.get(event)
            dir_fd = args[fd_i] if fd_i is not None and fd_i < len(args) else None
            paths = tuple((args[i], dir_fd) for i in _PATH_EVENTS[event] if i < len(args))
        elif event in _SPAWN_EVENTS:
            if getattr(self._local, "busy", False):
                return
            self._refuse(f"starting another process ({event})")
            return
        elif event in ("os.kill", "os.killpg"):
            pid = args[0]
            own = os.getpid() if event == "os.kill" else os.getpgid(0)
            if pid not in (0, own):
                self._refuse(f"sending a signal to process {pid}")
            return
        elif event in _NET_EVENTS:
            self._refuse(f"network access ({event})")
            return
        else:
            return
        if getattr(self._local, "busy", False):
            return
        self._local.busy = True  # our own os.* calls below must not re-enter the check
        try:
            bad = []
            for path, dir_fd in paths:
                try:
                    real = self._resolve(path, dir_fd)
                except (OSError, TypeError, ValueError):
                    real = str(path)
                if real is not None and not self._inside(real):
                    bad.append(real)
        finally:
            self._local.busy = False
        if bad:
            self._refuse(f"writing outside its temp folder ({event} {bad[0]})")


_INSTALLED: WriteGuard | None = None


def install(allowed: list[str | os.PathLike]) -> WriteGuard:
    """Install the guard once per process (audit hooks cannot be removed)."""
    global _INSTALLED
    if _INSTALLED is None:
        _INSTALLED = WriteGuard([Path(p) for p in allowed])
        sys.addaudithook(_INSTALLED)
    return _INSTALLED


def installed() -> WriteGuard | None:
    return _INSTALLED
