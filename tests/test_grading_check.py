"""``check(...)``: the grade table of one exercise or section, inline in a notebook."""

from __future__ import annotations

import importlib

import pytest

from viddiff_mini.grading import check

check_mod = importlib.import_module("viddiff_mini.grading.check")  # the module, not check()

pytestmark = pytest.mark.instructor  # uses solutions/: not in the handout

TESTS = '''
import pytest


@pytest.mark.points(2)
@pytest.mark.exercise("11.9.1a")
def test_add(answers):
    got = answers("ex11_9").add(2, 3)
    assert got == 5, f"add(2, 3) should be 5, got {got}"


@pytest.mark.points(1)
@pytest.mark.exercise("11.9.1b")
def test_twice(answers):
    assert answers("ex11_9").twice(4) == 8
'''


@pytest.fixture
def tiny(tmp_path):
    """A graded folder and two answer folders (right / wrong) without torch: fast."""
    tests = tmp_path / "exercises"
    tests.mkdir()
    (tests / "test_ex11_9.py").write_text(TESTS)
    right, wrong = tmp_path / "right", tmp_path / "wrong"
    right.mkdir()
    wrong.mkdir()
    (right / "ex11_9.py").write_text("def add(a, b):\n    return a + b\n\n"
                                     "def twice(x):\n    return 2 * x\n")
    (wrong / "ex11_9.py").write_text("def add(a, b):\n    return a - b\n\n"
                                     "def twice(x):\n    raise NotImplementedError("
                                     "'Exercise 11.9.1b: double x')\n")
    return tests, right, wrong


def test_real_exercise_with_solutions_and_stubs(capsys):
    r = check("11.1.1a", answers="solutions")
    assert r.all_passed and r.possible > 0 and r.earned == r.possible, r.text()
    out = capsys.readouterr().out  # not in Jupyter: the text table is printed
    assert "11.1.1a" in out and "all public tests passed" in out
    r = check("11.1", answers="stubs", show=False)  # a section prefix
    assert not r.all_passed and r.earned == 0 and r.possible > 0
    rows = r.summary["exercises"]
    assert {e["exercise"][:5] for e in rows} == {"11.1."}
    assert all(e["status"] == "not attempted" for e in rows)


def test_prefix_failure_message_and_html(tiny, monkeypatch):
    tests, right, wrong = tiny
    r = check("11.9", answers=right, tests=tests, show=False)
    assert (r.earned, r.possible) == (3, 3) and r.all_passed
    assert [e["exercise"] for e in r.summary["exercises"]] == ["11.9.1a", "11.9.1b"]
    r = check("11.9.1", answers=wrong, tests=tests, show=False)
    text = r.text()
    assert "add(2, 3) should be 5, got -1" in text
    assert "not attempted (Exercise 11.9.1b: double x)" in text
    assert "all tests passed" not in text
    html = r.html()
    assert html.startswith("<table") and "add(2, 3) should be 5" in html

    shown = []  # in Jupyter the table is displayed as HTML
    monkeypatch.setattr(check_mod, "_in_jupyter", lambda: True)
    import IPython.display
    monkeypatch.setattr(IPython.display, "display", lambda obj: shown.append(obj))
    check("11.9.1a", answers=right, tests=tests)
    assert len(shown) == 1 and "all public tests passed" in shown[0].data


def test_unknown_exercise_and_bad_arguments(tiny):
    tests, right, _ = tiny
    r = check("11.9.7z", answers=right, tests=tests, show=False)
    assert r.error and "no graded tests" in r.error and not r.all_passed
    with pytest.raises(ValueError, match="exercise"):
        check("", show=False)
    with pytest.raises(ValueError, match="answers"):
        check("11.9.1a", answers=tests / "nope", tests=tests, show=False)
    with pytest.raises(FileNotFoundError, match="tests"):
        check("11.9.1a", answers=right, tests=tests / "nope", show=False)


def test_a_crash_does_not_take_the_kernel_down(tiny):
    tests, right, _ = tiny
    crash = tests.parent / "crash"
    crash.mkdir()
    (crash / "ex11_9.py").write_text("import os\n\ndef add(a, b):\n    os._exit(3)\n\n"
                                     "def twice(x):\n    return 2 * x\n")
    r = check("11.9", answers=crash, tests=tests, show=False)
    # the answer runs in its own process: its crash fails that test, the others still run
    assert (r.earned, r.possible) == (1, 3) and not r.note
    assert "ended the interpreter (exit code 3)" in r.text()
    assert "ended the interpreter (exit code 3)" in r.html()
