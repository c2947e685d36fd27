"""pytest plugin for graded exercises (registered as ``viddiff_grading`` via ``pytest11``).

What it adds:

* markers ``@pytest.mark.points(n)``, ``@pytest.mark.exercise("11.1.1a")``,
  ``@pytest.mark.hidden`` (a graded test the students do not get; files named
  ``test_*_hidden.py`` are hidden as a whole) and ``@pytest.mark.instructor`` (a test of
  the course tooling that lives next to graded tests but is not one, e.g. the meta-checks
  in ``tests/exercises/test_meta.py``: never graded, never in the handout);
* the ``answers`` fixture: ``answers("ex11_1")`` returns the module loaded fresh from the
  chosen answers folder (``--answers=stubs|solutions|PATH``, else ``$VIDDIFF_ANSWERS``,
  else the stubs in ``lessons/exercises``);
* a collection check: every test in a graded file (a file in a folder named ``exercises``
  or named ``test_ex*.py``) must carry both ``points`` and ``exercise`` marks unless it is
  marked ``instructor``; otherwise the run stops with a usage error naming the tests;
* ``NotImplementedError("Exercise ...")`` from a stub is reported as one line,
  "not attempted: Exercise ...", instead of a traceback;
* ``--per-test-timeout S``: a graded test running longer than S seconds fails with
  "timed out after Ss" (SIGALRM; a loop that ignores signals needs an outer kill, which
  ``viddiff grade`` provides);
* ``--exercise ID`` (repeatable): run only the tests of these exercises (``11.1`` selects
  the section, ``11.1.1`` the part);
* a grade table at the end of the run and a JSON report (``--grade-json``, default
  ``grade.json`` in the rootdir). The JSON is rewritten as each test starts and ends, so a
  grader can tell which test was running when a process died;
* ``--sandbox DIR`` (repeatable; used by ``viddiff grade``): install :mod:`.guard`, which
  refuses writes outside DIR, new processes and signals to other processes; a test that
  tried gets the outcome "violation".

Everything except the markers and options is inactive unless graded tests (tests with a
``points`` mark) were collected, so the unit-test output stays clean. Works with
``pytest -n N`` (xdist): the records travel with the test reports.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time
from pathlib import Path

import pytest

from . import guard as _guard
from .answers import AnswerFileMissing, load_answers, resolve_answers_dir
from .report import NOT_ATTEMPTED, format_table, one_line, summarize, write_json

HIDDEN_SUFFIX = "_hidden.py"
_PROP = "viddiff"  # user_properties key carrying a graded test's record fields
# Outcomes after which the exercise's remaining tests are skipped (and why).
ABANDON = {"timeout": "timed out", "violation": "broke the grading sandbox",
           "output limit": "wrote more output than allowed"}


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
    group.addoption("--sandbox", action="append", default=[], metavar="DIR",
                    help="(for viddiff grade) refuse writes outside DIR, new processes and "
                         "signals to other processes; repeatable")


def pytest_configure(config):
    config.addinivalue_line("markers", "points(n): points a graded test is worth")
    config.addinivalue_line("markers", "exercise(id): the exercise a graded test belongs to, "
                                       "e.g. exercise('11.1.1a')")
    config.addinivalue_line("markers", "hidden: instructor-only graded test (not in the handout)")
    config.addinivalue_line("markers", "instructor: a test of the course tooling, not a graded "
                                       "test (exempt from the points check, not in the handout)")
    sandbox = config.getoption("--sandbox")
    if sandbox:
        _guard.install([Path(p) for p in sandbox])
    # One state object per config, registered as a plugin so its hooks see this run only
    # (nested in-process runs, e.g. pytester, get their own).
    config._viddiff = _State(config)
    config.pluginmanager.register(config._viddiff, "viddiff_grading_state")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """After a test timed out, hit an output/sandbox limit, the other tests of that
    exercise are skipped: the exercise is broken and each would cost the time limit again."""
    state = getattr(item.config, "_viddiff", None)
    ex = _exercise(item)
    if state is not None and _points(item) is not None and str(ex) in state.abandoned:
        pytest.skip(f"not run: an earlier test of {ex} {state.abandoned[str(ex)]}")


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


def selected(ex: str, wanted: list[str]) -> bool:
    """Does exercise ``ex`` (``11.1.2b``) match one of ``wanted`` (``11.1.2b``, ``11.1.2``,
    ``11.1``, ``11``)?"""
    for w in wanted:
        w = w.strip()
        if ex == w or ex.startswith(w + ".") or (ex.startswith(w) and ex[len(w):].isalpha()):
            return True
    return False


def _record_fields(item) -> dict:
    return {"exercise": str(_exercise(item)), "points": float(_points(item)),
            "hidden": is_hidden(item)}


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


# --------------------------------------------------------------------------- the run's state
class _State:
    """Records of this run's graded tests; also the plugin object holding the run's hooks."""

    def __init__(self, config):
        self.config = config
        self.active = False
        self.records: dict[str, dict] = {}  # nodeid -> test record
        self.current: str | None = None
        self.path: Path | None = None
        self.started = time.time()
        self.worker = hasattr(config, "workerinput")  # an xdist worker: the controller reports
        self._violations_at: dict[str, int] = {}
        self.abandoned: dict[str, str] = {}  # exercise -> why its other tests are skipped

    def _activate(self) -> None:
        if self.active:
            return
        self.active = True
        opt = self.config.getoption("--grade-json")
        self.path = Path(opt) if opt else Path(self.config.rootpath) / "grade.json"

    def write(self, complete: bool = False) -> None:
        if not self.active or self.path is None or self.worker:
            return
        tests = list(self.records.values())
        summary = summarize(tests)
        opt = self.config.getoption("--answers")
        try:
            folder = str(resolve_answers_dir(opt))
        except ValueError:
            folder = str(opt)
        data = {"answers": folder, "complete": complete, "current": self.current,
                "earned": summary["earned"], "possible": summary["possible"],
                "exercises": summary["exercises"], "tests": tests,
                "seconds": round(time.time() - self.started, 3)}
        g = _guard.installed()
        with g.exempt() if g is not None else contextlib.nullcontext():
            write_json(self.path, data)

    # ------------------------------------------------------------------ collection
    def pytest_collection_modifyitems(self, session, config, items):
        bad = []
        for item in items:
            if item.get_closest_marker("instructor") is not None:
                continue
            if is_graded_file(item.path) and (_points(item) is None or _exercise(item) is None):
                bad.append(item.nodeid)
            pts = _points(item)
            if pts is not None and (isinstance(pts, bool) or not isinstance(pts, (int, float))
                                    or pts <= 0):
                bad.append(f"{item.nodeid} (points must be a positive number, got {pts!r})")
        if bad:
            raise pytest.UsageError(
                "graded test files need @pytest.mark.points(n) and "
                "@pytest.mark.exercise('11.N.ka') on every test (or "
                "pytestmark = pytest.mark.instructor for a file that is not graded); "
                "missing on:\n  " + "\n  ".join(bad))
        wanted = config.getoption("--exercise")
        if wanted:
            keep, drop = [], []
            for item in items:
                ex = _exercise(item)
                (keep if ex is not None and selected(str(ex), wanted) else drop).append(item)
            if drop:
                config.hook.pytest_deselected(items=drop)
                items[:] = keep
        graded = [it for it in items if _points(it) is not None]
        if not graded:
            return
        try:  # a bad --answers / $VIDDIFF_ANSWERS is a usage error, not N failing tests
            resolve_answers_dir(config.getoption("--answers"))
        except ValueError as e:
            raise pytest.UsageError(str(e)) from None
        self._activate()
        for it in graded:
            self.records[it.nodeid] = {"nodeid": it.nodeid, **_record_fields(it),
                                       "outcome": "pending", "message": ""}
        self.write()

    # ------------------------------------------------------------------ running
    def _timeout(self, item) -> float:
        if _points(item) is None:
            return 0.0
        return float(self.config.getoption("--per-test-timeout") or 0.0)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_setup(self, item):
        g = _guard.installed()
        self._violations_at[item.nodeid] = len(g.violations) if g is not None else 0
        with _alarm(self._timeout(item)):
            yield

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_call(self, item):
        with _alarm(self._timeout(item)):
            yield

    def pytest_runtest_logstart(self, nodeid, location):
        if nodeid in self.records:
            self.current = nodeid
            self.write()

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        report = outcome.get_result()
        if _points(item) is None:
            return
        report.user_properties.append((_PROP, _record_fields(item)))
        g = _guard.installed()
        if g is not None and len(g.violations) > self._violations_at.get(item.nodeid, 0):
            # Refused by the sandbox: the test fails even if the code caught the error.
            what = g.violations[self._violations_at[item.nodeid]]
            self._violations_at[item.nodeid] = len(g.violations)
            report.outcome = "failed"
            report.longrepr = one_line(f"tried {what}: not allowed while grading", 300)
            report.user_properties.append(("viddiff_outcome", "violation"))
            return
        if call.excinfo is None:
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
        elif isinstance(exc, OSError) and exc.errno == errno.EFBIG:
            report.longrepr = "wrote more output than allowed (File too large)"
            report.user_properties.append(("viddiff_outcome", "output limit"))
        elif isinstance(exc, MemoryError):
            report.longrepr = "ran out of memory (MemoryError): used more memory than allowed?"

    def pytest_runtest_logreport(self, report):
        props = dict(report.user_properties)
        if report.nodeid not in self.records:
            if _PROP not in props:
                return
            # xdist controller: records arrive with the reports.
            self._activate()
            self.records[report.nodeid] = {"nodeid": report.nodeid, **props[_PROP],
                                           "outcome": "pending", "message": ""}
        rec = self.records[report.nodeid]
        special = props.get("viddiff_outcome")
        if report.failed:
            if rec["outcome"] in ("pending", "passed"):
                rec["outcome"] = special or "failed"
                rec["message"] = _message(report)
                if special in ABANDON:
                    self.abandoned.setdefault(rec["exercise"], ABANDON[special])
        elif report.skipped and rec["outcome"] == "pending":
            rec["outcome"], rec["message"] = "skipped", _message(report)
        elif report.when == "call" and report.passed and rec["outcome"] == "pending":
            rec["outcome"] = "passed"
        if report.when == "teardown":
            if rec["outcome"] == "pending":  # e.g. an error we did not see; never count as passed
                rec["outcome"] = "failed"
            self.current = None
            self.write()

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session, exitstatus):
        self.current = None
        self.write(complete=not self.config.option.collectonly)

    def pytest_terminal_summary(self, terminalreporter, exitstatus, config):
        if not self.active or config.option.collectonly or self.worker:
            return
        summary = summarize(list(self.records.values()))
        tr = terminalreporter
        tr.write_sep("=", "grade")
        for line in format_table(summary).splitlines():
            tr.write_line(line)
        if self.path is not None:
            try:
                where = os.path.relpath(self.path)
            except ValueError:  # another drive on Windows
                where = str(self.path)
            tr.write_line(f"grade report: {where}")
