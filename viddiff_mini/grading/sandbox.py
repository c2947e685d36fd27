"""How the answer's worker process is started: plainly, or inside a bubblewrap sandbox.

Three modes (``pytest --worker-sandbox MODE``; ``viddiff grade`` uses ``bwrap``):

``none``
    a plain child process (a student running ``pytest tests/exercises`` on their own
    answers: the same proxy, the same messages, no isolation needed);
``guard``
    a plain child process with the resource limits and the audit guard of :mod:`.guard`
    (``viddiff grade --unsafe-no-sandbox``: a diagnostic, **not** isolation: the answer
    can read every file the grader can);
``bwrap``
    the worker runs under `bubblewrap <https://github.com/containers/bubblewrap>`_
    (``bwrap``, Debian package ``bubblewrap``) with

    * a private filesystem view: an empty root, read-only ``/usr`` (and ``/bin``, ``/lib``
      ... as on the host), the Python installation(s) and virtual environment, the
      ``viddiff_mini`` package folder only (so no ``solutions/``, no tests, no grader
      files outside the package) and the answers folder at ``/answers`` (for ``viddiff
      grade``: the copy holding this one submission's ``ex11_*.py`` files); the root and
      ``/dev`` remounted read-only;
    * a private ``/tmp`` (also ``HOME``): a tmpfs of at most ``disk`` bytes, the only
      writable place (plus a small ``/dev/shm``), gone when the worker ends;
    * new pid, network, IPC, UTS and (where possible) cgroup namespaces: no network at all
      (every protocol; only an unconfigured loopback), no view of the grader's or other
      submissions' processes, and every process the answer starts dies with the worker;
      ``--die-with-parent`` and ``--new-session``;
    * the limits set by the worker before the answer is loaded: ``RLIMIT_AS`` (memory),
      ``RLIMIT_FSIZE`` (largest file), ``RLIMIT_CPU``, ``RLIMIT_NPROC`` (processes and
      threads), no core dumps. ``RLIMIT_NPROC`` does not bind root, so a grader running
      as root has the worker drop to an unprivileged uid (``uid``, default 65534) before
      the answer runs; a grader running as an ordinary user needs unprivileged user
      namespaces (``--unshare-user``; the limit then counts the sandbox's processes only).

:func:`bwrap_problem` says why the sandbox cannot run here (``None`` when it can).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .worker import BOOT

MODES = ("none", "guard", "bwrap")
ANSWERS_MOUNT = "/answers"


@dataclass
class WorkerLimits:
    memory: int = 4 << 30      # RLIMIT_AS, bytes
    fsize: int = 16 << 20      # RLIMIT_FSIZE, bytes (also caps the worker's log)
    cpu: int = 0               # RLIMIT_CPU, seconds (0: none; the judge's clock decides)
    nproc: int = 64            # RLIMIT_NPROC
    disk: int = 64 << 20       # size of the private /tmp (bwrap)
    uid: int = 65534           # the uid a root grader drops to (bwrap)


def package_dir() -> Path:
    return Path(__file__).resolve().parent.parent


_PROBLEM: dict[bool, str | None] = {}


def _namespace_flags() -> list[str]:
    flags = ["--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
             "--unshare-cgroup-try", "--die-with-parent", "--new-session"]
    if os.geteuid() != 0:
        flags.insert(0, "--unshare-user")
    return flags


def bwrap_problem() -> str | None:
    """``None`` if bubblewrap can start a sandbox here, else what is wrong (cached)."""
    if True in _PROBLEM:
        return _PROBLEM[True]
    exe = shutil.which("bwrap")
    if exe is None:
        problem = ("bubblewrap (bwrap) is not installed: install it (Debian/Ubuntu: "
                   "apt-get install bubblewrap)")
    elif not sys.platform.startswith("linux"):
        problem = "the bubblewrap sandbox needs Linux"
    else:
        try:
            proc = subprocess.run([exe, *_namespace_flags(), "--ro-bind", "/", "/", "true"],
                                  capture_output=True, text=True, timeout=60)
            problem = None if proc.returncode == 0 else (
                f"bwrap cannot create the sandbox here: {proc.stderr.strip()[:300]} (it needs "
                "root or unprivileged user namespaces, e.g. sysctl "
                "kernel.unprivileged_userns_clone=1)")
        except (OSError, subprocess.TimeoutExpired) as e:
            problem = f"bwrap did not run: {e}"
    _PROBLEM[True] = problem
    return problem


def _system_binds() -> list[str]:
    args: list[str] = []
    for top in ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32"):
        p = Path(top)
        if p.is_symlink():
            args += ["--symlink", os.readlink(p), top]
        elif p.is_dir():
            args += ["--ro-bind", top, top]
    for f in ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime"):
        if os.path.exists(f):
            args += ["--ro-bind", f, f]
    return args


def _python_binds() -> list[str]:
    roots: list[str] = []
    for p in (sys.base_prefix, sys.base_exec_prefix, sys.prefix, sys.exec_prefix,
              os.path.dirname(os.path.realpath(sys.executable))):
        real = os.path.realpath(p)
        if real.startswith("/usr/") or real == "/usr":
            continue
        if not any(real == r or real.startswith(r + os.sep) for r in roots):
            roots = [r for r in roots if not r.startswith(real + os.sep)] + [real]
    args: list[str] = []
    for r in roots:
        args += ["--ro-bind", r, r]
    for p in (sys.prefix, sys.base_prefix):  # the unresolved paths too (symlinked installs)
        if os.path.realpath(p) != p and os.path.isdir(p):
            args += ["--ro-bind", p, p]
    return args


def _parents(binds: list[str]) -> list[str]:
    """``--perms 0755 --dir`` for every folder above a bind's destination (bwrap would
    create them 0700, unreadable for the unprivileged uid the worker runs as)."""
    dests = [binds[i + 2] for i, a in enumerate(binds) if a in ("--ro-bind", "--symlink")]
    parents: set[str] = set()
    for d in dests:
        p = Path(d).parent
        while str(p) != "/":
            parents.add(str(p))
            p = p.parent
    out: list[str] = []
    for p in sorted(parents, key=lambda q: (q.count("/"), q)):
        out += ["--perms", "0755", "--dir", p]
    return out


def _env_common() -> dict[str, str]:
    env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg",
           "PYTHONDONTWRITEBYTECODE": "1"}
    for k in ("VIDDIFF_FAST", "LANG", "LC_ALL"):
        if k in os.environ:
            env[k] = os.environ[k]
    return env


class Launcher:
    """Builds the worker's command for one answers folder; ``__call__`` gives
    ``(argv, env, cwd)`` for each start (each start gets a fresh private temp folder)."""

    def __init__(self, mode: str, answers: Path, limits: WorkerLimits | None = None,
                 preload: list[str] | None = None):
        if mode not in MODES:
            raise ValueError(f"worker sandbox: expected one of {MODES}, got {mode!r}")
        self.mode = mode
        self.answers = Path(answers).resolve()
        self.limits = limits or WorkerLimits()
        self.preload = preload  # modules imported before the answer; None: torch if we have it
        self._tmpdirs: list[str] = []
        if mode == "bwrap":
            problem = bwrap_problem()
            if problem:
                raise RuntimeError(problem)

    def _limit_args(self) -> list[str]:
        lim = self.limits
        args = ["--memory", str(lim.memory), "--fsize", str(lim.fsize), "--cpu", str(lim.cpu),
                "--nproc", str(lim.nproc)]
        return args

    def _preload(self) -> list[str]:
        # torch is imported before the answer when the tests use it (by default: when the
        # judge has it), so that its import time is not charged to the first test
        names = self.preload if self.preload is not None else (
            ["torch"] if "torch" in sys.modules else [])
        return [a for n in names for a in ("--preload", n)]

    def __call__(self) -> tuple[list[str], dict, str]:
        pkg_parent = str(package_dir().parent)
        if self.mode == "bwrap":
            lim = self.limits
            binds = [*_system_binds(), *_python_binds(),
                     "--ro-bind", str(package_dir()), str(package_dir()),
                     "--ro-bind", str(self.answers), ANSWERS_MOUNT]
            # the private /tmp first: bwrap applies its arguments in order, so a tmpfs
            # mounted after the binds would hide a venv or a checkout that lives under /tmp
            argv = [shutil.which("bwrap") or "bwrap", *_namespace_flags(),
                    "--perms", "1777", "--size", str(lim.disk), "--tmpfs", "/tmp",
                    *_parents(binds), *binds,
                    "--proc", "/proc", "--dev", "/dev",
                    "--perms", "1777", "--size", str(min(lim.disk, 16 << 20)),
                    "--tmpfs", "/dev/shm",
                    "--remount-ro", "/dev", "--remount-ro", "/",
                    "--chdir", "/tmp", "--clearenv"]
            env = {**_env_common(), "PATH": "/usr/bin:/bin", "HOME": "/tmp", "TMPDIR": "/tmp",
                   "MPLCONFIGDIR": "/tmp", "USER": "sandbox", "LOGNAME": "sandbox"}
            for k, v in env.items():
                argv += ["--setenv", k, v]
            argv += [sys.executable, "-I", "-c", BOOT, pkg_parent, "--answers", ANSWERS_MOUNT,
                     *self._limit_args(), "--guard", "/tmp", *self._preload()]
            if os.geteuid() == 0:
                argv += ["--uid", str(lim.uid)]
            return argv, {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}, "/"
        tmp = tempfile.mkdtemp(prefix="viddiff_worker_")
        self._tmpdirs.append(tmp)
        env = dict(os.environ)
        argv = [sys.executable, "-I", "-c", BOOT, pkg_parent, "--answers", str(self.answers),
                *self._preload()]
        if self.mode == "guard":
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **_env_common(),
                   "HOME": tmp, "TMPDIR": tmp, "MPLCONFIGDIR": tmp}
            argv += [*self._limit_args(), "--guard", tmp]
        else:
            env.update(TMPDIR=tmp)
        return argv, env, tmp

    def cleanup(self) -> None:
        for d in self._tmpdirs:
            shutil.rmtree(d, ignore_errors=True)
        self._tmpdirs.clear()
