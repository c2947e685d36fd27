"""The grading pytest plugin, run on small graded test files written here (``pytester``).

The answers are a tiny ``ex11_9.py`` (one right, one stub, one wrong function) so that
no test here needs torch; the inner runs are in-process (the answers always run in a
worker process of their own).
"""

from __future__ import annotations

import json

import pytest

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.instructor  # tests of the course tooling: not in the handout

ANSWERS = '''
def add(a, b):
    return a + b


def mul(a, b):
    raise NotImplementedError("Exercise 11.9.2a: multiply a and b")


def sub(a, b):
    return a + b  # wrong on purpose


def spin():
    while True:
        pass
'''

GRADED = '''
import pytest


@pytest.mark.points(2)
@pytest.mark.exercise("11.9.1a")
def test_add(answers):
    assert answers("ex11_9").add(2, 3) == 5


@pytest.mark.points(1)
@pytest.mark.exercise("11.9.1a")
def test_add_negative(answers):
    assert answers("ex11_9").add(-2, -3) == -5


@pytest.mark.points(3)
@pytest.mark.exercise("11.9.2a")
def test_mul(answers):
    assert answers("ex11_9").mul(2, 3) == 6


@pytest.mark.points(1)
@pytest.mark.exercise("11.9.10a")
def test_sub(answers):
    got = answers("ex11_9").sub(5, 3)
    assert got == 2, f"sub(5, 3) should be 2, got {got}"
'''


@pytest.fixture
def course(pytester):
    """A graded file in ``exercises/`` and an answers folder; returns the run arguments."""
    ans = pytester.mkdir("answers")
    (ans / "ex11_9.py").write_text(ANSWERS)
    ex = pytester.mkdir("exercises")
    (ex / "test_ex11_9.py").write_text(GRADED)
    report = pytester.path / "out" / "grade.json"
    return ["exercises", f"--answers={ans}", f"--grade-json={report}", "-p",
            "no:cacheprovider"], report


def _grade(report):
    return json.loads(report.read_text())


def test_grade_table_json_and_not_attempted(pytester, course):
    args, report = course
    result = pytester.runpytest(*args)
    result.assert_outcomes(passed=2, failed=2)
    out = result.stdout.str()
    result.stdout.fnmatch_lines([
        "*= grade =*",
        "exercise*tests passed*points*status / first failure*",
        "11.9.1a*2/2*3/3*all public tests passed*",
        "11.9.2a*0/1*0/3*not attempted (Exercise 11.9.2a: multiply a and b)*",
        "11.9.10a*0/1*0/1*1 failed: AssertionError: sub(5, 3) should be 2, got 8*",
        "total*3/7*",
        "Public tests only*",
    ])
    # natural order (11.9.2a before 11.9.10a); honest wording; a stub is one line
    assert out.index("11.9.2a ") < out.index("11.9.10a ")
    assert "all tests passed" not in out
    assert "raise NotImplementedError" not in out and "Traceback" not in out
    data = _grade(report)
    assert data["complete"] and data["current"] is None
    assert (data["earned"], data["possible"]) == (3, 7)
    outcomes = {t["nodeid"].split("::")[1]: t["outcome"] for t in data["tests"]}
    assert outcomes == {"test_add": "passed", "test_add_negative": "passed",
                        "test_mul": "not attempted", "test_sub": "failed"}


def test_answers_from_environment(pytester, course, monkeypatch):
    args, report = course
    monkeypatch.setenv("VIDDIFF_ANSWERS", str(pytester.path / "answers"))
    result = pytester.runpytest(*[a for a in args if not a.startswith("--answers")])
    result.assert_outcomes(passed=2, failed=2)
    monkeypatch.setenv("VIDDIFF_ANSWERS", str(pytester.path / "nowhere"))
    result = pytester.runpytest(*[a for a in args if not a.startswith("--answers")])
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*answers*nowhere*is not a folder*"])


def test_graded_file_without_points_cannot_be_collected(pytester, course):
    args, report = course
    (pytester.path / "exercises" / "test_ex11_8.py").write_text(
        "import pytest\n\n@pytest.mark.exercise('11.8.1a')\n"
        "def test_unmarked(answers):\n    assert True\n")
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*@pytest.mark.points(n)*", "*test_ex11_8.py::test_unmarked*"])
    assert not report.exists()


def test_instructor_file_is_exempt_and_plain_runs_stay_quiet(pytester, course):
    args, report = course
    (pytester.path / "exercises" / "test_tools.py").write_text(
        "import pytest\n\npytestmark = pytest.mark.instructor\n\n"
        "def test_tooling():\n    assert True\n")
    result = pytester.runpytest(*args)
    result.assert_outcomes(passed=3, failed=2)
    assert len(_grade(report)["tests"]) == 4  # the instructor test is not graded
    # unit tests only: no table, no report
    pytester.makepyfile(test_unit="def test_plain():\n    assert 1 + 1 == 2\n")
    result = pytester.runpytest("test_unit.py", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert "= grade =" not in result.stdout.str()
    assert not (pytester.path / "grade.json").exists()


def test_exercise_selection_by_id_and_prefix(pytester, course):
    args, report = course
    pytester.runpytest(*args, "--exercise", "11.9.1")
    assert {t["exercise"] for t in _grade(report)["tests"]} == {"11.9.1a"}
    pytester.runpytest(*args, "--exercise", "11.9.2a", "--exercise", "11.9.10a")
    assert {t["exercise"] for t in _grade(report)["tests"]} == {"11.9.2a", "11.9.10a"}
    pytester.runpytest(*args, "--exercise", "11.9")
    assert len(_grade(report)["tests"]) == 4


def test_hidden_tests_change_the_wording(pytester, course):
    args, report = course
    (pytester.path / "exercises" / "test_ex11_9_hidden.py").write_text(
        "import pytest\n\n@pytest.mark.points(1)\n@pytest.mark.exercise('11.9.1a')\n"
        "def test_add_zero(answers):\n    assert answers('ex11_9').add(0, 0) == 0\n")
    result = pytester.runpytest(*args, "--exercise", "11.9.1a")
    result.stdout.fnmatch_lines(["11.9.1a*3/3*4/4*all public and hidden tests passed*",
                                 "*include hidden tests*"])
    hidden = [t for t in _grade(report)["tests"] if t["hidden"]]
    assert [t["nodeid"].split("::")[1] for t in hidden] == ["test_add_zero"]


def test_per_test_timeout_skips_the_rest_of_the_exercise(pytester, course):
    args, report = course
    (pytester.path / "exercises" / "test_ex11_7.py").write_text(
        "import pytest\n\n"
        "@pytest.mark.points(1)\n@pytest.mark.exercise('11.7.1a')\n"
        "def test_spin(answers):\n"
        "    try:\n        answers('ex11_9').spin()\n"
        "    except Exception:\n        pass  # the alarm is a BaseException: not caught\n\n"
        "@pytest.mark.points(1)\n@pytest.mark.exercise('11.7.1a')\n"
        "def test_spin_again(answers):\n    answers('ex11_9').spin()\n\n"
        "@pytest.mark.points(1)\n@pytest.mark.exercise('11.7.2a')\n"
        "def test_other(answers):\n    assert answers('ex11_9').add(1, 1) == 2\n")
    result = pytester.runpytest(*args, "--exercise", "11.7", "--per-test-timeout", "0.5")
    result.assert_outcomes(passed=1, failed=1, skipped=1)
    result.stdout.fnmatch_lines(["11.7.1a*0/2*0/2*1 failed, 1 not run: timed out after 0.5s (per-test limit)*"])
    tests = {t["nodeid"].split("::")[1]: t for t in _grade(report)["tests"]}
    assert tests["test_spin"]["outcome"] == "timeout"
    assert tests["test_spin_again"]["outcome"] == "skipped"
    assert "earlier test of 11.7.1a timed out" in tests["test_spin_again"]["message"]
    assert tests["test_other"]["outcome"] == "passed"


def test_guard_refuses_writes_outside_and_processes(pytester, course):
    """``--worker-sandbox guard``: the audit guard in the answers' process refuses the write
    and the process start and fails the test even though the answer swallowed the error;
    the worker's own temp folder may be written."""
    args, report = course
    outside = pytester.path / "outside.txt"
    (pytester.path / "answers" / "ex11_6.py").write_text(
        "import os, subprocess, tempfile\n\n"
        "def write_outside():\n"
        "    try:\n"
        f"        open({str(outside)!r}, 'w').write('x')\n"
        "    except OSError:\n        pass\n\n"
        "def spawn():\n"
        "    try:\n        subprocess.run(['true'])\n"
        "    except OSError:\n        pass\n\n"
        "def write_tmp():\n"
        "    p = os.path.join(tempfile.gettempdir(), 'ok.txt')\n"
        "    open(p, 'w').write('x')\n"
        "    return open(p).read()\n")
    (pytester.path / "exercises" / "test_ex11_6.py").write_text(
        "import pytest\n\n"
        "@pytest.mark.points(1)\n@pytest.mark.exercise('11.6.1a')\n"
        "def test_write_outside(answers):\n    answers('ex11_6').write_outside()\n\n"
        "@pytest.mark.points(1)\n@pytest.mark.exercise('11.6.2a')\n"
        "def test_spawn(answers):\n    answers('ex11_6').spawn()\n\n"
        "@pytest.mark.points(1)\n@pytest.mark.exercise('11.6.3a')\n"
        "def test_write_inside(answers):\n    assert answers('ex11_6').write_tmp() == 'x'\n")
    result = pytester.runpytest(*args, "--exercise", "11.6", "--worker-sandbox", "guard")
    result.assert_outcomes(passed=1, failed=2)
    assert not outside.exists()
    tests = {t["nodeid"].split("::")[1]: t for t in _grade(report)["tests"]}
    assert tests["test_write_outside"]["outcome"] == "violation"
    assert "writing outside its temp folder" in tests["test_write_outside"]["message"]
    assert tests["test_spawn"]["outcome"] == "violation"
    assert "starting another process" in tests["test_spawn"]["message"]


def test_a_crash_costs_the_exercise_only(pytester, course):
    """The answer's process dies (os._exit): that test fails with the reason, the rest of
    its exercise is skipped, the next exercise runs in a fresh worker."""
    args, report = course
    (pytester.path / "answers" / "ex11_5.py").write_text(
        "import os\n\ndef die():\n    os._exit(7)\n\ndef one():\n    return 1\n")
    (pytester.path / "exercises" / "test_ex11_5.py").write_text(
        "import pytest\n\n"
        "@pytest.mark.points(1)\n@pytest.mark.exercise('11.5.1a')\n"
        "def test_die(answers):\n    answers('ex11_5').die()\n\n"
        "@pytest.mark.points(1)\n@pytest.mark.exercise('11.5.1a')\n"
        "def test_die_again(answers):\n    answers('ex11_5').die()\n\n"
        "@pytest.mark.points(1)\n@pytest.mark.exercise('11.5.2a')\n"
        "def test_one(answers):\n    assert answers('ex11_5').one() == 1\n")
    result = pytester.runpytest(*args, "--exercise", "11.5")
    result.assert_outcomes(passed=1, failed=1, skipped=1)
    tests = {t["nodeid"].split("::")[1]: t for t in _grade(report)["tests"]}
    assert tests["test_die"]["outcome"] == "crash"
    assert "exit code 7" in tests["test_die"]["message"]
    assert tests["test_die_again"]["outcome"] == "skipped"
