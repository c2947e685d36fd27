"""The judge / worker proxy (:mod:`viddiff_mini.grading.remote`): plain data only comes
back, exceptions and crashes are reported, callbacks and handles work both ways."""

from __future__ import annotations

import io
import os
import pickle

import pytest
import torch

from viddiff_mini.grading import drivers, sandbox
from viddiff_mini.grading.remote import BadReply, RemoteObject, Session, WorkerCrashed, load_plain

pytestmark = pytest.mark.instructor

ANSWER = '''
import os
import torch


class Liar(torch.Tensor):
    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if func in (torch.allclose, torch.equal):
            return True
        return super().__torch_function__(func, types, args, kwargs or {})


class Yes(int):
    def __eq__(self, other):
        return True

    __hash__ = int.__hash__


class AllEqual(dict):
    def __eq__(self, other):
        return True


class Opaque:
    value = 7

    def __eq__(self, other):
        return True

    def times(self, k):
        return self.value * k


def liar():
    return torch.ones(3).as_subclass(Liar)


def subclasses():
    return Yes(5), AllEqual(a=Yes(1)), [torch.nn.Parameter(torch.zeros(2))]


def opaque():
    return Opaque()


def fails(kind):
    if kind == "value":
        raise ValueError("factor: expected >= 1")
    if kind == "stub":
        raise NotImplementedError("Exercise 11.9.1a: do it")
    if kind == "oserror":
        raise OSError(27, "File too large")
    raise SystemExit(3)


def die():
    os._exit(3)


def apply(fn, x):
    return fn(x) + 1


def grad_enabled():
    return torch.is_grad_enabled()


def make_linear():
    torch.manual_seed(0)
    return torch.nn.Linear(2, 1)
'''


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    folder = tmp_path_factory.mktemp("answers")
    (folder / "ex11_9.py").write_text(ANSWER)
    s = Session(sandbox.Launcher("none", folder))
    yield s
    s.close()
    s.launch.cleanup()


@pytest.fixture
def ex(session):
    yield session.request("load", "ex11_9")
    session.reset()


def test_fake_tensors_and_subclasses_arrive_as_plain_data(ex):
    t = ex.liar()
    assert type(t) is torch.Tensor and not torch.allclose(t, torch.zeros(3))
    n, d, params = ex.subclasses()
    assert type(n) is int and n == 5 and n != 6
    assert type(d) is dict and type(d["a"]) is int and d != {"a": 2}
    assert type(params[0]) is torch.Tensor
    obj = ex.opaque()  # not plain data: a handle, compared by identity only
    assert isinstance(obj, RemoteObject) and not obj == 7 and obj.value == 7
    assert obj.times(3) == 21
    for fake_truth in (lambda: bool(obj), lambda: obj != 7, lambda: obj < 7):
        with pytest.raises(TypeError):
            fake_truth()


def test_exceptions_come_back_as_builtin_types(ex):
    with pytest.raises(ValueError, match="factor"):
        ex.fails("value")
    with pytest.raises(NotImplementedError, match=r"^Exercise 11\.9\.1a"):
        ex.fails("stub")
    with pytest.raises(OSError) as info:
        ex.fails("oserror")
    assert info.value.errno == 27
    with pytest.raises(Exception, match="SystemExit") as info:
        ex.fails("exit")
    assert not isinstance(info.value, SystemExit)


def test_callbacks_handles_and_grad_mode(ex, session):
    seen = []

    def double(x):  # a test's function: runs here, called from the answer
        seen.append(x)
        return 2 * x

    assert ex.apply(double, 4) == 9 and seen == [4]
    assert ex.grad_enabled() is True
    with torch.no_grad():
        assert ex.grad_enabled() is False
    lin = ex.make_linear()  # a module stays in the worker; helpers run next to it
    assert answers_remote(session, drivers.count_flops, lin, torch.zeros(3, 2)) == 12
    assert sum(p.numel() for p in lin.parameters()) == 3


class SubTensor(torch.Tensor):
    pass


def answers_remote(session, fn, *args):
    return session.request("run", fn, args, {})


def test_a_dead_worker_is_reported_and_restarted(ex, session):
    starts = session.starts
    with pytest.raises(WorkerCrashed, match="exit code 3"):
        ex.die()
    with pytest.raises(WorkerCrashed, match="restarted"):
        ex.fails("value")  # a handle of the dead process
    again = session.request("load", "ex11_9")
    assert again.grad_enabled() is True and session.starts == starts + 1


def test_forged_payloads_are_refused():
    def resolve(marker):
        raise AssertionError("no markers here")

    with pytest.raises(BadReply):
        load_plain(b"P" + pickle.dumps(os.system), resolve)  # a global: refused
    buf = io.BytesIO()
    torch.save(torch.ones(2).as_subclass(SubTensor), buf)
    with pytest.raises(BadReply):
        load_plain(b"T" + buf.getvalue(), resolve)
    buf = io.BytesIO()
    torch.save({"value": torch.ones(2, requires_grad=True)}, buf)
    with pytest.raises(BadReply):
        load_plain(b"T" + buf.getvalue(), resolve)
    assert load_plain(b"P" + pickle.dumps({"value": (1, 2.5, "x", None, {3})}), resolve) == \
        {"value": (1, 2.5, "x", None, {3})}
