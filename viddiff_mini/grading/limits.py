"""Run a command under resource limits (the launcher ``viddiff grade`` starts each judge
process with; the submission itself runs in the judge's sandboxed worker, see
:mod:`.sandbox`)::

    python -m viddiff_mini.grading.limits --memory BYTES --fsize BYTES --cpu SECONDS \\
        [--allow-write DIR ...] -- CMD ARGS...

* ``--memory`` caps the address space (``RLIMIT_AS``): a submission that allocates too
  much gets ``MemoryError`` instead of taking the machine down;
* ``--fsize`` caps the size of any file the process writes (``RLIMIT_FSIZE``): printing
  without end fails with ``OSError: [Errno 27] File too large`` instead of filling the
  disk (Python ignores ``SIGXFSZ``);
* ``--cpu`` caps CPU seconds (``RLIMIT_CPU``): a backstop that also ends processes that
  escaped the grader's process-group kill;
* core dumps are off;
* ``--allow-write``: where the kernel has Landlock (Linux >= 5.13), every write, create,
  remove or rename outside these folders is refused by the kernel (``EACCES``), whatever
  the code uses (Python, ``ctypes``, a child process); signals to processes outside the
  sandbox and TCP connections are refused too where the kernel's Landlock is new enough.
  Elsewhere this step is skipped. ``viddiff grade`` no longer uses it: the judge runs
  trusted code only, and a Landlock domain would forbid the mounts of the bubblewrap
  sandbox it starts for the submission.

The limits are set here and then this process ``exec``-s the command, so they apply to it
and to everything it starts. Why a launcher instead of ``Popen(preexec_fn=...)``:
``viddiff grade --jobs N`` starts processes from several threads, and ``preexec_fn`` is
documented as unsafe in the presence of threads.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import platform
import resource
import struct
import sys

# Landlock ABI (linux/landlock.h). Syscall numbers are the same on x86-64 and arm64.
_SYS_CREATE, _SYS_ADD_RULE, _SYS_RESTRICT = 444, 445, 446
_PR_SET_NO_NEW_PRIVS = 38
_RULE_PATH_BENEATH = 1
_FS_WRITE_FILE = 1 << 1
_FS_DIR_WRITES = sum(1 << i for i in (4, 5, 6, 7, 8, 9, 10, 11, 12))  # remove/make *
_FS_REFER, _FS_TRUNCATE = 1 << 13, 1 << 14
_NET_BIND_TCP, _NET_CONNECT_TCP = 1 << 0, 1 << 1
_SCOPE_ABSTRACT_UNIX, _SCOPE_SIGNAL = 1 << 0, 1 << 1


def landlock_abi() -> int:
    """The kernel's Landlock ABI version, 0 where there is none."""
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "aarch64"):
        return 0
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    abi = libc.syscall(_SYS_CREATE, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    return max(0, int(abi))


def restrict_writes(allowed: list[str]) -> int:
    """Allow writes only beneath ``allowed`` for this process and its children (Landlock).

    Returns the ABI used (0: not available, nothing done). Reads stay unrestricted.
    """
    abi = landlock_abi()
    if abi < 1:
        return 0
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    fs = _FS_WRITE_FILE | _FS_DIR_WRITES
    if abi >= 2:
        fs |= _FS_REFER
    if abi >= 3:
        fs |= _FS_TRUNCATE
    net = (_NET_BIND_TCP | _NET_CONNECT_TCP) if abi >= 4 else 0
    scoped = (_SCOPE_ABSTRACT_UNIX | _SCOPE_SIGNAL) if abi >= 6 else 0
    # struct landlock_ruleset_attr { u64 handled_access_fs, handled_access_net, scoped }
    fields = [fs] + ([net] if abi >= 4 else []) + ([scoped] if abi >= 6 else [])
    attr = ctypes.create_string_buffer(struct.pack(f"={len(fields)}Q", *fields))
    ruleset = libc.syscall(_SYS_CREATE, attr, ctypes.c_size_t(len(attr.raw)),
                           ctypes.c_uint32(0))
    if ruleset < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset failed")
    try:
        for path in [*allowed, os.devnull]:
            is_dir = os.path.isdir(path)
            access = fs if is_dir else fs & (_FS_WRITE_FILE | _FS_TRUNCATE)
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            try:
                # struct landlock_path_beneath_attr { u64 allowed_access; s32 parent_fd; } packed
                rule = ctypes.create_string_buffer(struct.pack("=Qi", access, fd))
                if libc.syscall(_SYS_ADD_RULE, ctypes.c_int(ruleset),
                                ctypes.c_int(_RULE_PATH_BENEATH), rule, ctypes.c_uint32(0)) < 0:
                    raise OSError(ctypes.get_errno(), f"landlock_add_rule failed for {path}")
            finally:
                os.close(fd)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
        if libc.syscall(_SYS_RESTRICT, ctypes.c_int(ruleset), ctypes.c_uint32(0)) < 0:
            raise OSError(ctypes.get_errno(), "landlock_restrict_self failed")
    finally:
        os.close(ruleset)
    return abi


def _set(limit: int, value: int) -> None:
    if value > 0:
        _soft, hard = resource.getrlimit(limit)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        resource.setrlimit(limit, (value, value))


def main(argv: list[str]) -> int:
    if "--" not in argv:
        print("usage: python -m viddiff_mini.grading.limits [--memory B] [--fsize B] [--cpu S] "
              "[--allow-write DIR ...] -- CMD...", file=sys.stderr)
        return 2
    split = argv.index("--")
    parser = argparse.ArgumentParser(prog="python -m viddiff_mini.grading.limits")
    parser.add_argument("--memory", type=int, default=0, help="address-space limit, bytes")
    parser.add_argument("--fsize", type=int, default=0, help="largest file written, bytes")
    parser.add_argument("--cpu", type=int, default=0, help="CPU seconds")
    parser.add_argument("--allow-write", action="append", default=[], metavar="DIR")
    args = parser.parse_args(argv[:split])
    cmd = argv[split + 1:]
    if not cmd:
        parser.error("no command after --")
    _set(resource.RLIMIT_AS, args.memory)
    _set(resource.RLIMIT_FSIZE, args.fsize)
    if args.cpu > 0:
        # soft limit: SIGXCPU (may be ignored); hard limit a little later: SIGKILL.
        resource.setrlimit(resource.RLIMIT_CPU, (args.cpu, args.cpu + 5))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if args.allow_write:
        try:
            restrict_writes(args.allow_write)
        except OSError as e:  # e.g. a container that filters the syscalls: the guard remains
            print(f"viddiff grade: Landlock not applied ({e}); relying on the in-process "
                  f"guard", file=sys.stderr)
    os.execvp(cmd[0], cmd)
    return 127  # pragma: no cover - execvp does not return


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
