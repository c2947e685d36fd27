"""pytest plugin for graded exercises (registered as ``viddiff_grading`` via ``pytest11``).

What it adds:

* markers ``@pytest.mark.points(n)``, ``@pytest.mark.exercise("11.1.1a")``,
  ``@pytest.mark.hidden`` (a graded test the students do not get; files named
  ``test_*_hidden.py`` are hidden as a whole) and ``@pytest.mark.instructor`` (a test of
  the course tooling that lives next to graded tests but is not one, e.g. the meta-checks
  in ``tests/exercises/test_meta.py``: never graded, never in the handout);
* the ``answers`` fixture: ``answers("ex11_1")`` returns the module loaded fresh from the
  chosen answers folder (``--answers=stubs|solutions|PATH``, else ``$VIDDIFF_ANSWERS``,
  else the stubs in ``lessons/exercises``) **in a separate worker process**: the test
  gets a proxy (:mod:`.remote`) whose calls run the answer there and bring back plain data
  only, so the test process (the judge) never imports the answer.
  ``answers.remote(fn, *args)`` runs a trusted helper (``viddiff_mini.grading.drivers``,
  torch) in that process, for what must happen next to the answer (autograd through it,
  FLOP counting, objects the answer keeps);
* ``--worker-sandbox none|guard|bwrap`` (:mod:`.sandbox`): how that process runs; ``viddiff
  grade`` uses ``bwrap`` (an OS sandbox) with ``--worker-memory``, ``--worker-output-cap``,
  ``--worker-disk``, ``--worker-nproc`` limits. A test whose answer broke the guard gets
  the outcome "violation"; one whose answer's process died gets "crash";
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

Everything except the markers and options is inactive unless graded tests (tests with a
``points`` mark) were collected, so the unit-test output stays clean. Works with
``pytest -n N`` (xdist): the records travel with the test reports.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import tempfile
import time
from pathlib import Path

import pytest

from .answers import _NAME_RE, AnswerFileMissing, resolve_answers_dir
from .remote import RemoteObject, Session, WorkerCrashed, _worker_importable
from .report import NOT_ATTEMPTED, format_table, one_line, summarize, write_json
from .sandbox import MODES, Launcher, WorkerLimits

HIDDEN_SUFFIX = "_hidden.py"
_PROP = "viddiff"  # user_properties key carrying a graded test's record fields
# Outcomes after which the exercise's remaining tests are skipped (and why).
ABANDON = {"timeout": "timed out", "violation": "broke the grading sandbox",
           "output limit": "wrote more output than allowed",
           "crash": "ended the answer's process"}


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
    group.addoption("--worker-sandbox", default="none", choices=MODES,
                    help="how the answers' process runs: none (default), guard (limits and "
                         "an audit guard, no isolation) or bwrap (the OS sandbox viddiff "
                         "grade uses)")
    d = WorkerLimits()
    group.addoption("--worker-memory", type=int, default=d.memory, metavar="BYTES")
    group.addoption("--worker-output-cap", type=int, default=d.fsize, metavar="BYTES")
    group.addoption("--worker-disk", type=int, default=d.disk, metavar="BYTES")
    group.addoption("--worker-nproc", type=int, default=d.nproc, metavar="N")
    group.addoption("--worker-cpu", type=int, default=d.cpu, metavar="SECONDS")
    group.addoption("--worker-uid", type=int, default=d.uid, metavar="UID",
                    help="the uid a root grader's sandboxed worker runs as")
    group.addoption("--worker-log", default=None, metavar="PATH",
                    help="file for the answers' printed output (default: this terminal)")


def pytest_configure(config):
    config.addinivalue_line("markers", "points(n): points a graded test is worth")
    config.addinivalue_line("markers", "exercise(id): the exercise a graded test belongs to, "
                                       "e.g. exercise('11.1.1a')")
    config.addinivalue_line("markers", "hidden: instructor-only graded test (not in the handout)")
    config.addinivalue_line("markers", "instructor: a test of the course tooling, not a graded "
                                       "test (exempt from the points check, not in the handout)")
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


class Answers:
    """What the ``answers`` fixture gives a test.

    ``answers("ex11_1")`` loads ``<answers folder>/ex11_1.py`` afresh in the answers'
    process and returns a proxy for the module; ``answers.remote(fn, *args, **kwargs)``
    calls ``fn`` (a function or class importable there: ``viddiff_mini.grading.drivers``,
    ``torch``) in that process and returns its result the same way (plain data, or a proxy
    for an object that stays there).
    """

    def __init__(self, session: Session, folder: Path):
        self.session, self.folder = session, folder

    def __call__(self, name: str) -> RemoteObject:
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise ValueError(f"name: expected a module name such as 'ex11_1', got {name!r}")
        if not (self.folder / f"{name}.py").is_file():
            raise AnswerFileMissing(
                f"answers folder {self.folder} has no {name}.py (expected the file "
                f"lessons/exercises/{name}.py of the handout)")
        return self.session.request("load", name)

    def remote(self, fn, *args, **kwargs):
        module = getattr(fn, "__module__", None) or ""
        if not _worker_importable(module):
            raise TypeError(f"answers.remote: {fn!r} is defined in {module!r}, which the "
                            f"answers' process cannot import (use viddiff_mini.grading.drivers)")
        return self.session.request("run", fn, args, kwargs)


@pytest.fixture
def answers(request):
    """``answers("ex11_1") -> module`` (a proxy: the answer runs in its own process)."""
    state = request.config._viddiff
    folder = resolve_answers_dir(request.config.getoption("--answers"))
    session = state.session(folder)
    yield Answers(session, folder)
    session.reset()


class _Empty:
    pass


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
        self.violations: list[str] = []  # reported by every worker of this run, in order
        self.sessions: dict[Path, Session] = {}
        self.uses_torch = True  # do the graded test files import torch (set at collection)
        self._log = None
        self._log_pos = 0

    def session(self, folder: Path) -> Session:
        """The worker session for an answers folder (one per folder and run)."""
        if folder not in self.sessions:
            opt = self.config.getoption
            limits = WorkerLimits(memory=opt("--worker-memory"), fsize=opt("--worker-output-cap"),
                                  cpu=opt("--worker-cpu"), nproc=opt("--worker-nproc"),
                                  disk=opt("--worker-disk"), uid=opt("--worker-uid"))
            launcher = Launcher(opt("--worker-sandbox"), folder, limits,
                                preload=["torch"] if self.uses_torch else [])
            if self._log is None:  # the answers' printed output; shown with a failing test
                path = opt("--worker-log")
                self._log = (open(path, "w+b") if path  # noqa: SIM115 - closed at the end
                             else tempfile.TemporaryFile(prefix="viddiff_answers_log_"))
            self.sessions[folder] = Session(launcher, log=self._log, violations=self.violations)
        return self.sessions[folder]

    def answer_output(self, limit: int = 8000) -> str:
        """What the answers printed since the last call (the end of it, at most ``limit``)."""
        if self._log is None:
            return ""
        try:
            end = os.fstat(self._log.fileno()).st_size
            start = max(self._log_pos, end - limit)
            data = os.pread(self._log.fileno(), end - start, start)
            self._log_pos = end
        except OSError:
            return ""
        return data.decode("utf-8", "replace")

    def pytest_unconfigure(self, config):
        for s in self.sessions.values():
            s.close()
            s.launch.cleanup()
        if self._log is not None:
            self._log.close()

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
        self.uses_torch = any("torch" in vars(getattr(it, "module", None) or _Empty)
                              for it in graded)
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
        self._violations_at[item.nodeid] = len(self.violations)
        if _points(item) is not None and "answers" in getattr(item, "fixturenames", ()):
            # start the answers' process before the clock runs (importing torch there is
            # not the answer's time); a failure here shows as the test's error
            try:
                folder = resolve_answers_dir(self.config.getoption("--answers"))
                self.session(folder).ensure_started()
            except Exception:
                pass  # the fixture raises it again, inside the test
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
        printed = self.answer_output()
        if printed.strip():
            report.sections.append((f"Captured output of the answer ({call.when})", printed))
        report.user_properties.append((_PROP, _record_fields(item)))
        if len(self.violations) > self._violations_at.get(item.nodeid, 0):
            # Refused by the guard: the test fails even if the code caught the error.
            what = self.violations[self._violations_at[item.nodeid]]
            self._violations_at[item.nodeid] = len(self.violations)
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
        elif isinstance(exc, WorkerCrashed):
            report.longrepr = one_line(str(exc), 300)
            report.user_properties.append(("viddiff_outcome", "crash"))
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
