"""``viddiff grade``: one real batch of misbehaving submissions, graded by the real CLI.

Each submission is a copy of ``solutions/ex11_1.py`` in which ``interpolate_frames``
misbehaves only for ``method="flow"``. The instructor's tests are a tiny folder written
here: exercise 11.1.1a (linear blending, 2 public tests) and 11.1.1b (flow, 1 hidden test,
placed between the two so that a crash there must be followed by a fresh process for the
last 11.1.1a test). So for every misbehaviour: 11.1.1b scores 0, 11.1.1a keeps its 3
points, and the batch finishes.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from viddiff_mini import cli
from viddiff_mini.grading import grade, limits
from viddiff_mini.grading.answers import solutions_dir, stubs_dir

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
    # overwrite the test files named on the command line (the error is swallowed: the
    # sandbox's record still fails the test)
    "write_tests": "import os, sys\n"
                   "        for a in sys.argv:\n"
                   "            p = a.split('::')[0]\n"
                   "            if p.endswith('.py') and os.path.isfile(p):\n"
                   "                try:\n"
                   "                    os.chmod(p, 0o644)\n"
                   "                except OSError:\n"
                   "                    pass\n"
                   "                try:\n"
                   "                    open(p, 'w').write('')\n"
                   "                except OSError:\n"
                   "                    pass",
    "write_cwd": "try:\n            open(GRADER_CWD + '/pwned.txt', 'w').write('x')\n"
                 "        except OSError:\n            pass",
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


def _put(folder: Path, text: str) -> None:
    (folder / "lessons" / "exercises").mkdir(parents=True)
    (folder / "lessons" / "exercises" / "ex11_1.py").write_text(text)


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    root = tmp_path_factory.mktemp("grade")
    hidden = root / "hidden"
    hidden.mkdir()
    (hidden / "test_ex11_1.py").write_text(TESTS)
    subs = root / "subs"
    subs.mkdir()
    grader_cwd = root / "grader_cwd"
    grader_cwd.mkdir()
    for name, code in {"good": None, **MISBEHAVIOURS}.items():
        text = _submission(code).replace("GRADER_CWD", repr(str(grader_cwd)))
        _put(subs / name, text)
    stub = subs / "stub"
    _put(stub, (stubs_dir() / "ex11_1.py").read_text())
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
    try:
        rc = cli.main(["grade", str(subs), "--tests", str(hidden), "--out", str(out),
                       "--timeout", "20", "--per-test-timeout", "5", "--memory", "2G",
                       "--output-cap", "2M", "--jobs", "2", "--histogram", str(hist),
                       "--feedback", str(root / "feedback"), "--no-progress"])
    finally:
        os.chdir(old)
    rows = {r["submission"]: r for r in csv.DictReader(out.open())}
    feedback = {p.stem: json.loads(p.read_text()) for p in (root / "feedback").glob("*.json")}
    return {"rc": rc, "rows": rows, "feedback": feedback, "root": root, "hist": hist,
            "hidden": hidden, "grader_cwd": grader_cwd}


def test_batch_finishes_with_one_row_per_submission(batch):
    assert batch["rc"] == 0
    names = {"good", "stub", "zipped", "evil", *MISBEHAVIOURS}
    assert set(batch["rows"]) == names
    assert set(batch["feedback"]) == names
    assert batch["hist"].stat().st_size > 1000
    for row in batch["rows"].values():
        assert row["possible"] == "4"
        assert set(row) >= {"11.1.1a", "11.1.1b", "total", "status", "notes"}


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
    ("hang", "timed out after 20s"),
    ("memory", "hidden test failed"),  # MemoryError: a plain (hidden) test failure
    ("sys_exit", "hidden test failed"),  # pytest turns SystemExit into a failure
    ("os_exit", "ended the interpreter"),
    ("segv_ctypes", "SIGSEGV"),
    ("segv_kill", "SIGSEGV"),
    ("print_mb", "more output than allowed"),
    ("write_tests", "sandbox"),
    ("write_cwd", "sandbox"),
])
def test_misbehaviour_zeroes_only_what_it_broke(batch, name, reason):
    row = batch["rows"][name]
    assert (row["11.1.1a"], row["11.1.1b"], row["total"]) == ("3", "0", "3"), row
    fb = batch["feedback"][name]
    b = next(e for e in fb["exercises"] if e["exercise"] == "11.1.1b")
    assert reason in json.dumps(b) + " ".join(fb["notes"]), (name, fb)


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
    assert list(batch["grader_cwd"].iterdir()) == []


def test_csv_written_when_nothing_can_be_graded(tmp_path):
    subs = tmp_path / "subs"
    (subs / "empty").mkdir(parents=True)
    (subs / "broken.zip").write_bytes(b"not a zip")
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    (hidden / "test_ex11_1.py").write_text(TESTS.replace("import torch", ""))
    out = tmp_path / "g.csv"
    result = grade.grade_all(subs, hidden, out, timeout=60, progress=False)
    rows = list(csv.DictReader(out.open()))
    assert [r["submission"] for r in rows] == ["broken", "empty"]
    assert all(r["total"] == "0" and r["status"] == "rejected" for r in rows)
    assert "graded 2 submission(s)" in result["text"]


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
