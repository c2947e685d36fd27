"""The answer's process: loads the student's module and runs what the judge asks for.

Started by :class:`.remote.Session` (inside the OS sandbox of :mod:`.sandbox` when grading)::

    python -I -c BOOT PKG_PARENT --answers DIR [--uid N] [--memory B] [--fsize B] [--cpu S]
        [--nproc N] [--guard DIR ...]

Before any student code runs it: keeps its two pipe ends private (the answer's
``print`` goes to stderr, never into the protocol), sets the resource limits, drops root
to ``--uid`` (a sandbox run by root; then ``RLIMIT_NPROC`` counts), installs the audit
guard of :mod:`.guard` (``--guard``: the only folders that may be written; a refused
write, process start, signal or network use is reported to the judge as a violation) and
imports torch. Then it answers requests until the judge closes the pipe.

Everything here is *untrusted* once the student's module is loaded: the student's code
runs in this process and can change anything in it, including this module. The judge
therefore believes nothing that comes from here beyond "this is plain data" (see
:mod:`.remote`).
"""

from __future__ import annotations

import argparse
import builtins
import contextlib
import io
import os
import pickle
import resource
import sys
import traceback

from .remote import (
    CALLBACK,
    CB_REPLY,
    ERROR,
    MARK,
    READY,
    REPLY,
    REQUEST,
    read_frame,
    write_frame,
)


class _JudgeCallable:
    """A function of the tests, passed by reference: calling it asks the judge to run it."""

    def __init__(self, worker: Worker, cid: int):
        self._worker, self._cid = worker, cid

    def __call__(self, *args, **kwargs):
        return self._worker.callback(self._cid, args, kwargs)

    def __repr__(self):
        return "<function of the tests>"


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, worker: Worker):
        super().__init__(file)
        self.worker = worker

    def persistent_load(self, pid):
        kind, ident = pid
        if kind == "h":
            return self.worker.handles[ident]
        if kind == "cb":
            return _JudgeCallable(self.worker, ident)
        raise pickle.UnpicklingError(f"unknown reference {pid!r}")


def _first_builtin(exc: BaseException) -> str:
    for cls in type(exc).__mro__:
        if getattr(builtins, cls.__name__, None) is cls:
            return cls.__name__
    return type(exc).__name__


def _safe_str(obj) -> str:
    try:
        return str(obj)[:4000]
    except BaseException:  # noqa: BLE001 - an answer's exception may break even str()
        return "<unprintable>"


class Worker:
    def __init__(self, rpc_in: int, rpc_out: int, answers: str, guard=None):
        self.rpc_in, self.rpc_out = rpc_in, rpc_out
        self.answers = answers
        self.guard = guard
        self.sent_violations = 0
        self.handles: dict[int, object] = {}
        self.by_id: dict[int, int] = {}
        self.next_id = 1

    # ------------------------------------------------------------------ plain data out
    def _handle(self, obj) -> tuple:
        hid = self.by_id.get(id(obj))
        if hid is None or self.handles.get(hid) is not obj:
            hid = self.next_id
            self.next_id += 1
            self.handles[hid] = obj
            self.by_id[id(obj)] = hid
        kind = type(obj).__name__
        name = getattr(obj, "__name__", None)
        desc = f"{kind} {name}" if isinstance(name, str) else kind
        return (MARK, "h", hid, desc[:200])

    def encode(self, obj, depth: int = 0):
        if depth > 60:
            raise ValueError("the value is nested too deeply to send")
        t = type(obj)
        if obj is None or t in (bool, int, float, complex, str, bytes):
            return obj
        if isinstance(obj, _JudgeCallable):
            return (MARK, "cb", obj._cid, "")
        torch = sys.modules.get("torch")  # not imported: nothing here can be a tensor
        if torch is not None:
            if isinstance(obj, torch.Tensor):
                return _plain_tensor(obj)
            if t in (torch.dtype, torch.device):
                return obj
            if isinstance(obj, torch.Size):
                return tuple(int(v) for v in tuple.__iter__(obj))
        if isinstance(obj, int):
            return int.__int__(obj)
        if isinstance(obj, float):
            return float.__float__(obj)
        if isinstance(obj, str):
            return str.__str__(obj)
        if isinstance(obj, bytes):
            return bytes(memoryview(obj))
        if isinstance(obj, tuple):
            return tuple(self.encode(v, depth + 1) for v in tuple.__iter__(obj))
        if isinstance(obj, list):
            return [self.encode(v, depth + 1) for v in list.__iter__(obj)]
        if isinstance(obj, dict):
            return {self.encode(k, depth + 1): self.encode(v, depth + 1)
                    for k, v in dict.items(obj)}
        if isinstance(obj, (set, frozenset)):
            return {self.encode(v, depth + 1) for v in set.__iter__(set(obj))}
        if t.__module__ == "numpy" and hasattr(obj, "tolist") and torch is not None:
            import numpy as np

            if isinstance(obj, np.ndarray):
                return torch.from_numpy(np.array(obj, copy=True))
            return self.encode(obj.item(), depth + 1)
        return self._handle(obj)

    def _violations(self) -> list[str]:
        if self.guard is None:
            return []
        new = self.guard.violations[self.sent_violations:]
        self.sent_violations = len(self.guard.violations)
        return [str(v) for v in new]

    def _send(self, kind: bytes, data: dict) -> None:
        data["violations"] = self._violations()
        torch = sys.modules.get("torch")
        if torch is not None:
            buf = io.BytesIO()
            torch.save(data, buf)
            write_frame(self.rpc_out, kind, b"T" + buf.getvalue())
        else:  # no torch in this process, so no tensor in the data
            write_frame(self.rpc_out, kind, b"P" + pickle.dumps(data, protocol=4))

    def _send_error(self, exc: BaseException) -> None:
        info = {"type": _first_builtin(exc), "message": _safe_str(exc)}
        if isinstance(exc, OSError) and isinstance(exc.errno, int):
            info["errno"] = int(exc.errno)
            info["strerror"] = _safe_str(exc.strerror)
        try:
            frames = traceback.extract_tb(exc.__traceback__)
            frames = [f for f in frames if "viddiff_mini/grading/" not in f.filename]
            info["trace"] = "".join(traceback.format_list(frames[-6:]))[-3000:]
        except BaseException:  # noqa: BLE001
            pass
        self._send(ERROR, {"error": info})

    # ------------------------------------------------------------------ requests
    def _load(self, name: str):
        from .answers import load_answers

        return load_answers(name, self.answers)

    def handle(self, payload: bytes) -> None:
        try:
            op, args, grad = _Unpickler(io.BytesIO(payload), self).load()
            torch = sys.modules.get("torch")
            with (torch.set_grad_enabled(bool(grad)) if torch is not None
                  else contextlib.nullcontext()):
                if op == "load":
                    value = self._load(*args)
                elif op == "getattr":
                    value = getattr(args[0], args[1])
                elif op == "call":
                    value = args[0](*args[1], **args[2])
                elif op == "run":
                    value = args[0](*args[1], **args[2])
                elif op == "list":
                    value = list(args[0])
                elif op == "len":
                    value = len(args[0])
                elif op == "getitem":
                    value = args[0][args[1]]
                elif op == "signature":
                    import inspect

                    try:
                        sig = inspect.signature(args[0])
                        value = [(p.name, int(p.kind), p.default is not p.empty)
                                 for p in sig.parameters.values()]
                    except (TypeError, ValueError):
                        value = None
                elif op == "reset":
                    self.handles.clear()
                    self.by_id.clear()
                    value = None
                else:
                    raise ValueError(f"unknown request {op!r}")
                encoded = self.encode(value)
        except BaseException as e:  # noqa: BLE001 - everything goes back to the judge
            self._send_error(e)
            return
        try:
            self._send(REPLY, {"value": encoded})
        except Exception as e:  # noqa: BLE001 - not serialisable: nothing was written yet
            self._send_error(e)

    def callback(self, cid: int, args: tuple, kwargs: dict):
        self._send(CALLBACK, {"fn": (MARK, "cb", cid, ""), "args": self.encode(tuple(args)),
                              "kwargs": self.encode(dict(kwargs))})
        while True:
            kind, payload = read_frame(self.rpc_in, 1 << 40)
            if kind == REQUEST:  # the test's function called the answer again
                self.handle(payload)
                continue
            if kind != CB_REPLY:
                raise RuntimeError("grading protocol error")
            result = _Unpickler(io.BytesIO(payload), self).load()
            if result[0] == "ok":
                return result[1]
            cls = getattr(builtins, result[1], None)
            exc = None
            if isinstance(cls, type) and issubclass(cls, Exception):
                try:
                    exc = cls(result[2])
                except Exception:  # noqa: BLE001 - e.g. an exception needing more arguments
                    exc = None
            raise exc if exc is not None else RuntimeError(f"{result[1]}: {result[2]}")

    def serve(self) -> None:
        write_frame(self.rpc_out, READY, b"")
        while True:
            try:
                kind, payload = read_frame(self.rpc_in, 1 << 40)
            except EOFError:
                return
            if kind != REQUEST:
                return
            self.handle(payload)


def _plain_tensor(t):
    """A plain ``torch.Tensor`` with the same values: no subclass, no graph, on the CPU."""
    import torch

    with torch._C.DisableTorchFunctionSubclass():
        t = torch.Tensor.detach(t)
        if type(t) is not torch.Tensor:
            t = torch.Tensor.as_subclass(t, torch.Tensor)
        if t.layout != torch.strided:
            t = t.to_dense()
        if t.device.type != "cpu":
            t = t.cpu()
        if t.is_conj():
            t = t.resolve_conj()
        if t.is_neg():
            t = t.resolve_neg()
        try:
            compact = t.untyped_storage().nbytes() == t.numel() * t.element_size()
        except Exception:  # noqa: BLE001
            compact = False
        if not compact or not t.is_contiguous():
            t = t.clone(memory_format=torch.contiguous_format)
    return t


def _set_limit(which: int, value: int) -> None:
    if value > 0:
        _soft, hard = resource.getrlimit(which)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        resource.setrlimit(which, (value, value))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="viddiff_mini.grading.worker")
    parser.add_argument("--answers", required=True)
    parser.add_argument("--uid", type=int, default=None)
    parser.add_argument("--memory", type=int, default=0)
    parser.add_argument("--fsize", type=int, default=0)
    parser.add_argument("--cpu", type=int, default=0)
    parser.add_argument("--nproc", type=int, default=0)
    parser.add_argument("--guard", action="append", default=[])
    parser.add_argument("--preload", action="append", default=[])
    args = parser.parse_args(argv)
    sys.dont_write_bytecode = True  # no __pycache__ writes (read-only package, guarded)

    # The protocol keeps the two pipe ends; the answer's stdin is empty, its stdout goes
    # where stderr goes (a capped log when grading).
    rpc_in, rpc_out = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(2, 1)
    os.close(devnull)

    _set_limit(resource.RLIMIT_AS, args.memory)
    _set_limit(resource.RLIMIT_FSIZE, args.fsize)
    if args.cpu > 0:
        resource.setrlimit(resource.RLIMIT_CPU, (args.cpu, args.cpu + 5))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if args.uid is not None and os.geteuid() == 0:
        os.setgroups([])
        os.setresgid(args.uid, args.uid, args.uid)
        os.setresuid(args.uid, args.uid, args.uid)
    _set_limit(resource.RLIMIT_NPROC, args.nproc)

    for name in args.preload:  # e.g. torch: imported before the answer's clock starts
        __import__(name)

    guard = None
    if args.guard:
        from . import guard as _guard

        guard = _guard.install(args.guard)
    Worker(rpc_in, rpc_out, args.answers, guard).serve()
    sys.stdout.flush()
    os._exit(0)  # no atexit handlers of the answer


BOOT = ("import sys; sys.path.insert(0, sys.argv[1]); "
        "from viddiff_mini.grading.worker import main; main(sys.argv[2:])")
