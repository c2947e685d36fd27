"""The answers live in another process: a remote-call proxy between the judge and a worker.

The graded tests (the *judge*: expected values, tolerances, hidden cases, the report) run
in the pytest process. The student's module is never imported there: it is loaded in a
separate *worker* process (:mod:`.worker`, under the OS sandbox of :mod:`.sandbox` when
grading), and ``answers("ex11_1")`` returns a :class:`RemoteObject` standing for it.
Attribute access and calls on it are forwarded to the worker; what comes back is

* **plain data only**: ``None``, ``bool``, ``int``, ``float``, ``complex``, ``str``,
  ``bytes``, plain ``torch.Tensor`` (no subclass, no autograd graph), ``torch.dtype``,
  ``torch.device`` and lists / tuples / dicts / sets of them. The worker writes it with
  ``torch.save``; the judge reads it with ``torch.load(weights_only=True)`` and then checks
  the *exact* type of every element, so nothing the worker sends can run code in the judge
  or override a comparison (a dict or int subclass, a tensor subclass with
  ``__torch_function__``: all refused or turned into their plain base type);
* or a **handle** (another :class:`RemoteObject`) for anything else the answer returns (an
  ``nn.Module``, a function, a generator): its attributes and calls are forwarded again.

Arguments go the other way with :mod:`pickle` (the judge is the trusted side): tensors,
numbers, torch modules and optimizers are copied into the worker; handles are resolved to
the worker's own objects; a function or callable object defined in a test file (which the
worker cannot import, and must not read) is passed *by reference*: when the answer calls
it, the call comes back to the judge, runs there, and its result is sent back.
``torch.is_grad_enabled()`` of the judge is applied to every call in the worker, so
``with torch.no_grad(): model(x)`` means what it says.

Exceptions raised in the worker come back as the same built-in exception type and
message (``ValueError``, ``NotImplementedError``, ``OSError`` with its errno, ...) or as
:class:`RemoteError`; the worker's traceback is attached as a note. When the worker dies
(``os._exit``, a segfault, a resource limit, a protocol violation) the call raises
:class:`WorkerCrashed` and the next test starts a fresh worker.

Frames on the pipes: one kind byte, an 8-byte length, the payload. The judge never reads
more than ``max_reply`` bytes per frame.
"""

from __future__ import annotations

import builtins
import io
import itertools
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import time
import types

# frame kinds: judge -> worker
REQUEST, CB_REPLY = b"Q", b"C"
# worker -> judge
REPLY, ERROR, CALLBACK, READY = b"R", b"E", b"B", b"H"
_HEADER = struct.Struct(">cQ")
MARK = "\x00viddiff"  # tuple tag for handles / callbacks in worker -> judge data
MAX_DEPTH = 64
MAX_NODES = 2_000_000


class RemoteError(Exception):
    """An exception of the answer that is not a plain built-in exception."""


class WorkerCrashed(Exception):
    """The answer's process died (or broke the protocol) during a call."""


class BadReply(WorkerCrashed):
    """The worker sent something that is not plain data."""


# --------------------------------------------------------------------------- framing
def write_frame(fd: int, kind: bytes, payload: bytes) -> None:
    data = _HEADER.pack(kind, len(payload)) + payload
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def read_exact(fd: int, n: int, idle=None) -> bytes:
    """``n`` bytes from ``fd``; EOFError at end of stream. ``idle``: called every 0.5 s that
    nothing arrives (it raises to give up: the judge's patience with a silent worker)."""
    chunks, left = [], n
    while left:
        if idle is not None and not select.select([fd], [], [], 0.5)[0]:
            idle()
            continue
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_frame(fd: int, max_len: int, idle=None) -> tuple[bytes, bytes]:
    kind, n = _HEADER.unpack(read_exact(fd, _HEADER.size, idle))
    if n > max_len:
        raise BadReply(f"sent a reply of {n} bytes (more than the {max_len} allowed)")
    return kind, read_exact(fd, n, idle)


# --------------------------------------------------------------------------- judge side: checking
_SCALARS = (type(None), bool, int, float, complex, str, bytes)


def _tensor_ok(t) -> bool:
    torch = sys.modules["torch"]
    return (type(t) is torch.Tensor and t.layout == torch.strided and not t.requires_grad
            and t.grad_fn is None)


def check_plain(obj, resolve, _depth: int = 0, _count: list | None = None):
    """Return ``obj`` with markers resolved, after checking that every element has exactly
    one of the allowed types (raises :class:`BadReply` otherwise)."""
    count = _count if _count is not None else [0]
    count[0] += 1
    if _depth > MAX_DEPTH or count[0] > MAX_NODES:
        raise BadReply("sent data nested too deeply or too large")
    t = type(obj)
    if t in _SCALARS:
        return obj
    torch = sys.modules.get("torch")
    if torch is not None:
        if t is torch.dtype or t is torch.device:
            return obj
        if t is torch.Tensor:
            if not _tensor_ok(obj):
                raise BadReply("sent a tensor the grader does not accept")
            return obj
        if t is torch.Size:
            return tuple(int(v) for v in obj)
    if t is tuple and len(obj) == 4 and type(obj[0]) is str and obj[0] == MARK:
        return resolve(obj)
    if t in (list, tuple):
        out = [check_plain(v, resolve, _depth + 1, count) for v in obj]
        return out if t is list else tuple(out)
    if t in (set, frozenset):
        return t(check_plain(v, resolve, _depth + 1, count) for v in obj)
    if t is dict:
        out = {}
        for k, v in dict.items(obj):
            if type(k) not in (str, int, float, bool, type(None), tuple):
                raise BadReply(f"sent a dict key of type {type(k).__name__}")
            out[check_plain(k, resolve, _depth + 1, count)] = check_plain(v, resolve,
                                                                          _depth + 1, count)
        return out
    raise BadReply(f"sent a value of type {t.__name__}, which the grader does not accept")


class _NoGlobals(pickle.Unpickler):
    """Unpickles only the built-in containers and scalars: no class, no function."""

    def find_class(self, module, name):
        if module == "builtins" and name == "complex":
            return complex
        raise pickle.UnpicklingError(f"{module}.{name} is not plain data")


def load_plain(payload: bytes, resolve):
    """Payload ``b"T" + torch.save(...)`` read with ``torch.load(weights_only=True)``, or
    ``b"P" + pickle`` (no tensors) read by an unpickler that refuses every class; then
    :func:`check_plain`."""
    fmt, body = payload[:1], payload[1:]
    try:
        if fmt == b"T":
            import torch

            data = torch.load(io.BytesIO(body), weights_only=True, map_location="cpu")
        elif fmt == b"P":
            data = _NoGlobals(io.BytesIO(body)).load()
        else:
            raise ValueError("unknown format")
    except Exception as e:  # a forged or broken payload
        raise BadReply(f"sent data that is not plain ({type(e).__name__})") from None
    return check_plain(data, resolve)


# Built-in exceptions re-raised as themselves. Not StopIteration / StopAsyncIteration: in
# the judge they would end a ``map`` or ``all(...)`` early and make a check vacuous.
_BUILTIN_EXC = {name: obj for name, obj in vars(builtins).items()
                if isinstance(obj, type) and issubclass(obj, Exception)
                and not issubclass(obj, (Warning, StopIteration, StopAsyncIteration))}


def rebuild_exception(info: dict) -> BaseException:
    """The judge's copy of an exception raised in the worker (built-in types only)."""
    name = str(info.get("type", "Exception"))[:100]
    message = str(info.get("message", ""))[:4000]
    cls = _BUILTIN_EXC.get(name)
    exc: BaseException | None = None
    if cls is not None:
        try:
            if issubclass(cls, OSError) and isinstance(info.get("errno"), int):
                exc = cls(info["errno"], str(info.get("strerror", message))[:1000])
            elif cls is KeyError:
                exc = cls(message)
            else:
                exc = cls(message)
        except Exception:
            exc = None
    if exc is None:
        exc = RemoteError(f"{name}: {message}" if message else name)
    trace = str(info.get("trace", ""))[-3000:]
    if trace and hasattr(exc, "add_note"):
        exc.add_note("in the answer's process:\n" + trace)
    return exc


# --------------------------------------------------------------------------- judge side: proxy
class RemoteObject:
    """Stands for an object in the answer's worker: attributes and calls are forwarded.

    ``==`` is identity only (a handle never asks the worker whether it equals something);
    ``!=``, ``<`` ..., arithmetic and ``bool()`` raise ``TypeError``; ``iter``, ``len`` and
    ``[]`` fetch plain data.
    """

    __slots__ = ("_session", "_hid", "_gen", "_desc")

    def __init__(self, session, hid: int, gen: int, desc: str):
        object.__setattr__(self, "_session", session)
        object.__setattr__(self, "_hid", hid)
        object.__setattr__(self, "_gen", gen)
        object.__setattr__(self, "_desc", desc)

    def __getattr__(self, name: str):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return self._session.request("getattr", self, name)

    def __setattr__(self, name, value):
        raise AttributeError("objects of the answer cannot be modified from the tests")

    def __call__(self, *args, **kwargs):
        return self._session.request("call", self, args, kwargs)

    def __iter__(self):
        return iter(self._session.request("list", self))

    def __len__(self):
        return self._session.request("len", self)

    def __getitem__(self, key):
        return self._session.request("getitem", self, key)

    def __bool__(self):
        # not plain data: the judge does not let the answer's object decide a truth value
        raise TypeError(f"{self!r} is an object of the answer, not plain data (a bool, a "
                        f"number, a tensor): it has no truth value in the tests")

    def __ne__(self, other):
        raise TypeError(f"{self!r} is an object of the answer, not plain data: it cannot be "
                        f"compared")

    @property
    def __signature__(self):
        """The remote callable's signature (names and kinds; defaults are placeholders),
        for code that inspects how to call it."""
        import inspect

        spec = self._session.request("signature", self)
        if type(spec) is not list:
            raise ValueError("no signature")
        params = []
        for item in spec:
            name, kind, has_default = item
            if type(name) is not str or not name.isidentifier() or type(kind) is not int:
                raise ValueError("bad signature")
            params.append(inspect.Parameter(name, inspect._ParameterKind(kind),
                                            default=None if has_default else
                                            inspect.Parameter.empty))
        return inspect.Signature(params)

    def __eq__(self, other):
        return self is other

    def __hash__(self):
        return id(self)

    def __repr__(self):
        return f"<answer's {self._desc}>"

    def __reduce__(self):
        raise TypeError("a handle to the answer's object is only passed to the answer itself")


class _JudgePickler(pickle.Pickler):
    """Pickles arguments for the worker: handles by id, test-file callables by reference."""

    def __init__(self, file, session):
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.session = session

    def persistent_id(self, obj):
        if isinstance(obj, RemoteObject):
            return ("h", self.session._own(obj))
        if isinstance(obj, (type, types.ModuleType)):
            return None
        mod = _module_of(obj)
        if mod is not None and not _worker_importable(mod):
            torch = sys.modules.get("torch")
            if (torch is not None and isinstance(obj, torch.nn.Module)) or not callable(obj):
                raise TypeError(
                    f"cannot send {type(obj).__name__} (defined in {mod}) to the answer's "
                    f"process: put its class in viddiff_mini.grading.drivers")
            return ("cb", self.session._callback_id(obj))
        return None


def _module_of(obj) -> str | None:
    if isinstance(obj, (types.FunctionType, types.BuiltinFunctionType, types.MethodType)):
        return getattr(obj, "__module__", None) or "__main__"
    t = type(obj)
    if t.__module__ == "builtins":
        return None
    return t.__module__


_STDLIB = set(getattr(sys, "stdlib_module_names", ())) | {"builtins"}


def _worker_importable(module: str) -> bool:
    top = module.split(".")[0]
    return top in _STDLIB or top in {"torch", "viddiff_mini", "numpy", "einops"}


# --------------------------------------------------------------------------- judge side: session
class Session:
    """One worker process and the handles / callbacks of the current test.

    ``launch()`` gives ``(argv, env, cwd)`` for each start (:class:`.sandbox.Launcher`). The
    worker is started on first use and again after it died; ``reset()`` (after each test)
    drops the handles and callbacks of that test. What the worker prints goes to ``log``.
    """

    def __init__(self, launch, *, max_reply: int = 512 << 20, log=None,
                 violations: list | None = None, start_timeout: float = 300.0):
        self.launch = launch  # () -> (argv, env, cwd)
        self.max_reply = max_reply
        self.log = log  # a file object for the worker's stdout/stderr, or None: inherit
        self.proc: subprocess.Popen | None = None
        self.gen = 0
        self.callbacks: dict[int, object] = {}
        self._cb_ids = itertools.count(1)
        self.violations: list[str] = violations if violations is not None else []
        self.starts = 0
        self.start_timeout = start_timeout
        self._deadline: float | None = None

    # ------------------------------------------------------------------ process
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        argv, env, cwd = self.launch()
        self.gen += 1
        self.starts += 1
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self.log if self.log is not None else None, env=env, cwd=cwd,
            start_new_session=True, bufsize=0)
        try:
            ready, _, _ = select.select([self.proc.stdout.fileno()], [], [], self.start_timeout)
            if not ready:
                raise EOFError
            kind, payload = read_frame(self.proc.stdout.fileno(), 1 << 16)
        except (EOFError, BadReply, OSError):
            rc = None
            try:
                rc = self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            self.kill()
            raise WorkerCrashed(f"the answer's process did not start (exit code {rc}; its "
                                f"output is in the worker log)") from None
        except BaseException:
            self.kill()
            raise
        if kind != READY:
            self.kill()
            raise WorkerCrashed("the answer's process did not start (bad handshake)")

    def ensure_started(self) -> None:
        if not self.alive():
            self.start()

    def kill(self) -> None:
        proc = self.proc
        if proc is None:
            return
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.kill()
        except OSError:
            pass
        for f in (proc.stdin, proc.stdout):
            try:
                f.close()
            except OSError:
                pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover
            pass

    def close(self) -> None:
        self.kill()
        self.proc = None

    def _death(self) -> str:
        proc = self.proc
        rc = None
        if proc is not None:
            try:
                rc = proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                rc = None
        return describe_exit(rc)

    def reset(self, timeout: float = 10.0) -> None:
        """Forget this test's handles and callbacks (the worker drops its table too; a
        worker that does not manage that within ``timeout`` seconds, e.g. an answer's
        ``__del__`` that never returns, is killed)."""
        self.callbacks.clear()
        if self.alive():
            self._deadline = time.monotonic() + timeout
            try:
                self.request("reset")
            except Exception:
                self.kill()
            finally:
                self._deadline = None

    # ------------------------------------------------------------------ handles
    def _own(self, obj: RemoteObject) -> int:
        if obj._session is not self or obj._gen != self.gen:
            raise WorkerCrashed("a handle from an earlier answer's process (it was restarted)")
        return obj._hid

    def _callback_id(self, obj) -> int:
        for k, v in self.callbacks.items():
            if v is obj:
                return k
        k = next(self._cb_ids)
        self.callbacks[k] = obj
        return k

    def _resolve(self, marker):
        _tag, kind, ident, desc = marker
        if kind == "h" and type(ident) is int:
            return RemoteObject(self, ident, self.gen, str(desc)[:200])
        if kind == "cb" and type(ident) is int and ident in self.callbacks:
            return self.callbacks[ident]
        raise BadReply("sent an unknown reference")

    # ------------------------------------------------------------------ calls
    def _dumps(self, obj) -> bytes:
        buf = io.BytesIO()
        _JudgePickler(buf, self).dump(obj)
        return buf.getvalue()

    def request(self, op: str, *args):
        if not self.alive():
            if op == "reset":
                return None
            self.start()
        torch = sys.modules.get("torch")
        grad = torch.is_grad_enabled() if torch is not None else True
        payload = self._dumps((op, args, grad))  # may raise TypeError
        try:
            write_frame(self.proc.stdin.fileno(), REQUEST, payload)
            ok, value = self._wait()
        except WorkerCrashed:
            self.kill()
            raise
        except (EOFError, BrokenPipeError, ConnectionError):
            why = self._death()
            self.kill()
            raise WorkerCrashed(why) from None
        except BaseException:
            # a timeout or an interrupt in the middle of a call: the worker's state is
            # unknown, so it goes (with everything it started)
            self.kill()
            raise
        if not ok:
            raise value
        return value

    def _idle(self) -> None:
        """Nothing from the worker for 0.5 s: EOFError once its process has ended (even if a
        process it forked still holds the pipe open); give up past the deadline."""
        if self.proc.poll() is not None:
            raise EOFError
        if self._deadline is not None and time.monotonic() > self._deadline:
            raise WorkerCrashed("the answer's process stopped answering")

    def _wait(self) -> tuple[bool, object]:
        while True:
            kind, payload = read_frame(self.proc.stdout.fileno(), self.max_reply, self._idle)
            if kind == REPLY:
                msg = load_plain(payload, self._resolve)
                self._note(msg)
                return True, (msg.get("value") if type(msg) is dict else None)
            if kind == ERROR:
                msg = load_plain(payload, self._resolve)
                self._note(msg)
                info = msg.get("error") if type(msg) is dict else None
                return False, rebuild_exception(info if type(info) is dict else {})
            if kind == CALLBACK:
                msg = load_plain(payload, self._resolve)
                self._note(msg)
                self._run_callback(msg)
                continue
            raise BadReply("broke the grading protocol")

    def _note(self, msg) -> None:
        if type(msg) is dict:
            v = msg.get("violations")
            if type(v) is list:
                self.violations.extend(str(x)[:300] for x in v[:20])

    def _run_callback(self, msg) -> None:
        if type(msg) is not dict:
            raise BadReply("broke the grading protocol")
        fn = msg.get("fn")
        args, kwargs = msg.get("args", ()), msg.get("kwargs", {})
        if not callable(fn) or isinstance(fn, RemoteObject) or type(args) not in (list, tuple) \
                or type(kwargs) is not dict or not all(type(k) is str for k in kwargs):
            raise BadReply("made a bad call to a test's function")
        try:
            result = fn(*args, **kwargs)
            reply = self._dumps(("ok", result))
        except Exception as e:
            reply = pickle.dumps(("err", type(e).__name__, str(e)[:2000]))
        write_frame(self.proc.stdin.fileno(), CB_REPLY, reply)


def describe_exit(rc: int | None) -> str:
    """Why a worker ended, in words (bwrap reports a signal as 128 + signal)."""
    if rc is None:
        return "the answer's process stopped answering"
    sig = -rc if rc < 0 else (rc - 128 if 128 < rc < 128 + 65 else 0)
    if sig:
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        if name == "SIGXFSZ":
            return "wrote more output than allowed (File too large)"
        if name in ("SIGXCPU", "SIGKILL"):
            return f"killed ({name}): used too much CPU time or memory"
        return f"crashed the interpreter ({name})"
    return f"ended the interpreter (exit code {rc}) in the middle of a test"

