"""pytest plugin for graded exercises (registered as ``viddiff_grading`` via ``pytest11``).

What it adds:

* markers ``@pytest.mark.points(n)``, ``@pytest.mark.exercise("11.1.1a")`` and
  ``@pytest.mark.hidden`` (instructor-only test; files named ``test_*_hidden.py`` are hidden
  as a whole);
* the ``answers`` fixture: ``answers("ex11_1")`` returns the module loaded fresh from the
  chosen answers folder (``--answers=stubs|solutions|PATH``, else ``$VIDDIFF_ANSWERS``,
  else the stubs in ``lessons/exercises``);
* a collection check: every test in a graded file (a file in a folder named ``exercises``
  or named ``test_ex*.py``) must carry both ``points`` and ``exercise`` marks;
* ``NotImplementedError("Exercise ...")`` from a stub is reported as one line,
  "not attempted: Exercise ...", instead of a traceback;
* ``--per-test-timeout S``: a test running longer than S seconds fails with
  "timed out after Ss" (SIGALRM; a loop that ignores signals needs an outer kill, which
  ``viddiff grade`` provides);
* ``--exercise ID`` (repeatable): run only the tests of these exercises;
* a grade table at the end of the run and a JSON report (``--grade-json``, default
  ``grade.json`` in the rootdir). The JSON is rewritten as each test starts and ends, so a
  grader can tell which test was running when a process died.

Everything except the markers and options is inactive unless graded tests (tests with a
``points`` mark) were collected, so the unit-test output stays clean.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import pytest

from .answers import AnswerFileMissing, load_answers, resolve_answers_dir
from .report import NOT_ATTEMPTED, format_table, one_line, summarize, write_json

HIDDEN_SUFFIX = "_hidden.py"


class GradingTimeout(BaseException):
    """Raised by the per-test alarm. A BaseException so ``except Exception`` can't eat it."""


# --------------------------------------------------------------------------- options, markers
def pytest_addoption(parser):
    group = parser.getgroup("viddiff grading")
    group.addoption("--answers", default=None, metavar="stubs|solutions|PATH",
                    help="answers folder for graded tests (default: $VIDDIFF_ANSWERS or the "
                         "stubs in lessons/exercises)")
    group.addoption("--grade-json", default=None, metavar="PATH",
                    help="where to write the JSON grade report (default: ROOTDIR/grade.json)")
    group.addoption("--per-test-timeout", type=float, default=0.0, metavar="S",
                    help="fail a graded test that runs longer than S seconds (0 = off)")
    group.addoption("--exercise", action="append", default=[], metavar="ID",
                    help="run only the graded tests of this exercise (e.g. 11.1.1a; a prefix "
                         "such as 11.1 selects the section); repeatable")


def pytest_configure(config):
    config.addinivalue_line("markers", "points(n): points a graded test is worth")
    config.addinivalue_line("markers", "exercise(id): the exercise a graded test belongs to, "
                                       "e.g. exercise('11.1.1a')")
    config.addinivalue_line("markers", "hidden: instructor-only graded test (not in the handout)")
    config._viddiff = _State(config)


@pytest.fixture
def answers(request):
    """``answers("ex11_1") -> module``, loaded fresh from the chosen answers folder."""
    folder = resolve_answers_dir(request.config.getoption("--answers"))

    def _load(name: str):
        return load_answers(name, folder)

    return _load


# --------------------------------------------------------------------------- helpers
def is_graded_file(path: Path) -> bool:
    return path.parent.name == "exercises" or path.name.startswith("test_ex")


def is_hidden(item) -> bool:
    return item.get_closest_marker("hidden") is not None or item.path.name.endswith(HIDDEN_SUFFIX)


def _points(item):
    m = item.get_closest_marker("points")
    return None if m is None or not m.args else m.args[0]


def _exercise(item):
    m = item.get_closest_marker("exercise")
    return None if m is None or not m.args else m.args[0]


def _selected(ex: str, wanted: list[str]) -> bool:
    for w in wanted:
        if ex == w or ex.startswith(w + ".") or (ex.startswith(w) and ex[len(w):].isalpha()):
            return True
    return False


class _State:
    def __init__(self, config):
        self.config = config
        self.active = False
        self.records: dict[str, dict] = {}  # nodeid -> test record
        self.current: str | None = None
        self.path: Path | None = None
        self.started = time.time()

    def write(self, complete: bool = False) -> None:
        if not self.active or self.path is None:
            return
        tests = list(self.records.values())
        summary = summarize(tests)
        opt = self.config.getoption("--answers")
        try:
            folder = str(resolve_answers_dir(opt))
        except ValueError:
            folder = str(opt)
        write_json(self.path, {
            "answers": folder, "complete": complete, "current": self.current,
            "earned": summary["earned"], "possible": summary["possible"],
            "exercises": summary["exercises"], "tests": tests,
            "seconds": round(time.time() - self.started, 3)})


# --------------------------------------------------------------------------- collection
def pytest_collection_modifyitems(session, config, items):
    state: _State = config._viddiff
    bad = []
    for item in items:
        if is_graded_file(item.path) and (_points(item) is None or _exercise(item) is None):
            bad.append(item.nodeid)
        pts = _points(item)
        if pts is not None and (not isinstance(pts, (int, float)) or pts <= 0):
            bad.append(f"{item.nodeid} (points must be a positive number, got {pts!r})")
    if bad:
        raise pytest.UsageError(
            "graded tests need both @pytest.mark.points(n) and @pytest.mark.exercise('11.N.ka'); "
            "missing on:\n  " + "\n  ".join(bad))
    wanted = config.getoption("--exercise")
    if wanted:
        keep, drop = [], []
        for item in items:
            ex = _exercise(item)
            (keep if ex is not None and _selected(ex, wanted) else drop).append(item)
        if drop:
            config.hook.pytest_deselected(items=drop)
            items[:] = keep
    graded = [it for it in items if _points(it) is not None]
    if not graded:
        return
    state.active = True
    opt = config.getoption("--grade-json")
    state.path = Path(opt) if opt else Path(config.rootpath) / "grade.json"
    for it in graded:
        state.records[it.nodeid] = {
            "nodeid": it.nodeid, "exercise": str(_exercise(it)), "points": float(_points(it)),
            "hidden": is_hidden(it), "outcome": "pending", "message": ""}
    state.write()


# --------------------------------------------------------------------------- running
@contextlib.contextmanager
def _alarm(seconds: float):
    """Raise GradingTimeout after ``seconds`` (and again every second, in case the test
    swallows it with a bare ``except``)."""
    if seconds <= 0 or not hasattr(signal, "setitimer"):
        yield
        return

    def _raise(signum, frame):
        raise GradingTimeout(f"timed out after {seconds:g}s (per-test limit): an endless loop?")

    old = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, seconds, 1.0)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _timeout(item) -> float:
    if _points(item) is None:
        return 0.0
    return float(item.config.getoption("--per-test-timeout") or 0.0)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    with _alarm(_timeout(item)):
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    with _alarm(_timeout(item)):
        yield


def pytest_runtest_logstart(nodeid, location):
    state = _state_of_running()
    if state is not None and nodeid in state.records:
        state.current = nodeid
        state.write()


_CONFIG = None  # set in pytest_sessionstart; logstart/logreport get no config argument


def pytest_sessionstart(session):
    global _CONFIG
    _CONFIG = session.config


def _state_of_running():
    return getattr(_CONFIG, "_viddiff", None) if _CONFIG is not None else None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if _points(item) is None or call.excinfo is None:
        return
    exc = call.excinfo.value
    if isinstance(exc, NotImplementedError) and str(exc).startswith("Exercise"):
        # A stub: one line instead of a traceback.
        report.longrepr = f"{NOT_ATTEMPTED}: {one_line(str(exc), 200)}"
        report.user_properties.append(("viddiff_outcome", NOT_ATTEMPTED))
    elif isinstance(exc, GradingTimeout):
        report.longrepr = one_line(str(exc))
        report.user_properties.append(("viddiff_outcome", "timeout"))
    elif isinstance(exc, AnswerFileMissing):
        report.longrepr = one_line(str(exc), 300)
        report.user_properties.append(("viddiff_outcome", "missing"))


def _message(report) -> str:
    lr = report.longrepr
    if lr is None:
        return ""
    if isinstance(lr, str):
        return one_line(lr, 300)
    crash = getattr(lr, "reprcrash", None)
    if crash is not None and crash.message:
        return one_line(crash.message, 300)
    if isinstance(lr, tuple) and len(lr) == 3:  # skip reports: (path, line, reason)
        return one_line(str(lr[2]), 300)
    return one_line(str(lr), 300)


def pytest_runtest_logreport(report):
    state = _state_of_running()
    if state is None or report.nodeid not in state.records:
        return
    rec = state.records[report.nodeid]
    special = dict(report.user_properties).get("viddiff_outcome")
    if report.failed:
        if rec["outcome"] in ("pending", "passed"):
            rec["outcome"] = special or "failed"
            rec["message"] = _message(report)
    elif report.skipped and rec["outcome"] == "pending":
        rec["outcome"], rec["message"] = "skipped", _message(report)
    elif report.when == "call" and report.passed and rec["outcome"] == "pending":
        rec["outcome"] = "passed"
    if report.when == "teardown":
        if rec["outcome"] == "pending":  # e.g. an error we did not see; never count as passed
            rec["outcome"] = "failed"
        state.current = None
        state.write()


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session, exitstatus):
    state: _State = session.config._viddiff
    state.current = None
    state.write(complete=not session.config.option.collectonly)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    state: _State = config._viddiff
    if not state.active or config.option.collectonly:
        return
    summary = summarize(list(state.records.values()))
    tr = terminalreporter
    tr.write_sep("=", "grade")
    for line in format_table(summary).splitlines():
        tr.write_line(line)
    if state.path is not None:
        tr.write_line(f"grade report: {os.path.relpath(state.path)}")
