"""``viddiff grade SUBMISSIONS/ --tests HIDDEN/ --out grades.csv``: grade a batch of submissions.

Each entry of ``SUBMISSIONS/`` is one submission: a folder or a ``.zip`` holding
``lessons/exercises/ex11_*.py`` (or the ``ex11_*.py`` files anywhere inside, e.g. one
folder deep; names with ASCII digits only). For each one:

1. only the ``ex11_*.py`` files are copied (regular files, at most 1 MB each) into a fresh
   temp folder; a zip with an absolute path or ``..`` in any entry is rejected, symlinks
   are ignored;
2. the instructor's tests are copied into a *separate* fresh temp folder (read-only) and
   hashed;
3. **the judge**: pytest runs the tests in its own process (cwd: an empty folder of its
   own) under :mod:`.limits` (memory, file size, CPU backstop) with a per-test alarm
   (``--per-test-timeout``) and a wall-clock limit (``--timeout``, then its process group
   is killed). It never imports the submission;
4. **the worker**: the submission is loaded only in a separate process inside an OS
   sandbox (:mod:`.sandbox`: bubblewrap; a private read-only view of the system, the
   Python installation, the ``viddiff_mini`` package and this submission's files only: no
   solutions, no tests, no other submission, no grader temp folders; a private size-capped
   ``/tmp``; no network; new pid namespace; memory, file-size, CPU and process-count
   limits; an unprivileged uid when the grader is root). The tests reach it through the
   proxy of :mod:`.remote`: calls go in, *plain data* comes back (``torch.load`` with
   ``weights_only=True``, then an exact-type check), so nothing the submission returns can
   run code in the judge or fake an equality, and the report (``grade.json``, written by
   the judge into a folder the worker cannot see), the CSV and the feedback are written by
   trusted code only;
5. a test whose answer's process died (``os._exit``, a segfault, a limit) fails with the
   reason and the worker is restarted for the next test; a test that timed out kills the
   worker; an exercise with a test that timed out, crashed its process, wrote too much
   output or tried what the guard refuses (writing outside its ``/tmp``, starting
   processes, signals, network) scores zero; other exercises keep their points. If the
   judge itself dies, the remaining tests run in a fresh judge.

Without a working bubblewrap the grader refuses to run; ``--unsafe-no-sandbox`` grades
anyway with the limits and the audit guard only (the submission can then read anything
the grader can, e.g. the solutions: for trusted code only).

The CSV (one row per submission, a column per exercise, total, status, notes; cells that
a spreadsheet would read as a formula are prefixed with ``'``) is rewritten after every
submission and once more at the end whatever happens, so the batch always leaves a CSV. A
JSON feedback file per submission holds public messages only: a hidden test says "hidden
test failed" and is not named.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import csv
import hashlib
import io
import json
import math
import os
import queue
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from .report import HIDDEN_MESSAGE, exercise_sort_key, one_line, summarize
from .sandbox import bwrap_problem

EX_FILE_RE = re.compile(r"^ex11_[0-9]+\.py$", re.ASCII)
MAX_ANSWER_BYTES = 1 << 20
# Test outcomes (set by the plugin) that zero the whole exercise.
ZEROING = {"timeout": "timed out", "violation": "broke the grading sandbox",
           "output limit": "wrote more output than allowed",
           "crash": "the answer's process died"}
SANDBOX_UID_BASE = 61000  # a root grader's workers run as uid BASE + job slot


class Rejected(Exception):
    """A submission that cannot be graded at all (unsafe zip, no answer files)."""


# --------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("submissions", help="folder holding one folder or .zip per submission")
    parser.add_argument("--tests", required=True,
                        help="the instructor's graded tests (public + hidden), e.g. tests/exercises")
    parser.add_argument("--out", default="grades.csv", help="CSV to write (default grades.csv)")
    parser.add_argument("--feedback", default=None,
                        help="folder for one JSON feedback file per submission "
                             "(default: OUT's name + '_feedback' next to the CSV)")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="wall-clock seconds per grading process before it is killed "
                             "(default 120)")
    parser.add_argument("--per-test-timeout", type=float, default=None,
                        help="seconds per test (default: min(30, timeout))")
    parser.add_argument("--memory", default="4G", help="address-space limit, e.g. 4G, 1500M")
    parser.add_argument("--output-cap", default="16M",
                        help="largest file (including captured output) a submission may write")
    parser.add_argument("--disk", default="64M",
                        help="size of a submission's private /tmp in the sandbox (default 64M)")
    parser.add_argument("--nproc", type=int, default=64,
                        help="processes and threads a submission may run (default 64)")
    parser.add_argument("--unsafe-no-sandbox", action="store_true",
                        help="grade even without the bubblewrap sandbox (limits and an audit "
                             "guard only: the submission can read the solutions and other "
                             "files; only for code you trust)")
    parser.add_argument("--jobs", type=int, default=1, help="submissions graded at once")
    parser.add_argument("--histogram", default=None, help="write a PNG histogram of totals")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def parse_size(text: str | int) -> int:
    """``"4G"`` -> bytes. Accepts K/M/G/T suffixes (powers of 1024) or plain bytes."""
    if isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*", str(text), flags=re.I)
    if not m:
        raise ValueError(f"size: expected a number with an optional K/M/G/T suffix, got {text!r}")
    mult = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}[m.group(2).upper()]
    return int(float(m.group(1)) * mult)


def main(args) -> int:
    try:
        summary = grade_all(
            args.submissions, args.tests, args.out, feedback_dir=args.feedback,
            timeout=args.timeout, per_test_timeout=args.per_test_timeout,
            memory=parse_size(args.memory), output_cap=parse_size(args.output_cap),
            disk=parse_size(args.disk), nproc=args.nproc,
            sandbox="guard" if args.unsafe_no_sandbox else "bwrap",
            jobs=args.jobs, histogram=args.histogram, progress=not args.no_progress)
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        print(f"viddiff grade: {e}", file=sys.stderr)
        return 1
    print(summary["text"])
    print(f"wrote {summary['csv']} and feedback in {summary['feedback']}"
          + (f", histogram {args.histogram}" if args.histogram else ""))
    return 0


# --------------------------------------------------------------------------- files
def tree_hash(root: Path) -> str:
    """Hash of every file's relative path and bytes under ``root`` (pycache ignored)."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if "__pycache__" in p.parts:
            continue
        rel = p.relative_to(root).as_posix()
        if p.is_symlink():
            h.update(f"L:{rel}:{os.readlink(p)}\n".encode())
        elif p.is_file():
            h.update(f"F:{rel}\n".encode())
            h.update(hashlib.sha256(p.read_bytes()).digest())
        elif p.is_dir():
            h.update(f"D:{rel}\n".encode())
    return h.hexdigest()


def _make_read_only(root: Path) -> None:
    for p in [*root.rglob("*"), root]:
        mode = p.stat().st_mode
        p.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def _make_writable(root: Path) -> None:
    for p in [root, *root.rglob("*")]:
        if not p.is_symlink():
            p.chmod(p.stat().st_mode | stat.S_IWUSR)


def _rmtree(path: Path) -> None:
    if path.exists():
        try:
            _make_writable(path)
        except OSError:
            pass
        shutil.rmtree(path, ignore_errors=True)


def copy_tests(src: Path) -> tuple[Path, Path, str]:
    """Copy the graded tests into a fresh read-only temp folder.

    Returns ``(temp_root, tests_dir, hash)``; the tests live in ``temp_root/tests/exercises``
    (a folder named ``exercises``, so the plugin treats them as graded) with a ``pytest.ini``
    in ``temp_root/tests`` that makes it the rootdir.
    """
    root = Path(tempfile.mkdtemp(prefix="viddiff_tests_"))
    dst = root / "tests" / "exercises"
    shutil.copytree(src, dst, symlinks=False,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache"))
    (root / "tests" / "pytest.ini").write_text("[pytest]\naddopts = -p no:cacheprovider\n")
    _make_read_only(root / "tests")
    return root, dst, tree_hash(root / "tests")


def _pick(names: list[str]) -> dict[str, str]:
    """From archive/folder paths, pick one path per ``ex11_N.py``: prefer
    ``lessons/exercises/``, then the shallowest."""
    best: dict[str, tuple] = {}
    for n in names:
        parts = PurePosixPath(n).parts
        if not parts or not EX_FILE_RE.match(parts[-1]):
            continue
        if any(p.startswith(".") or p == "__MACOSX" for p in parts[:-1]):
            continue
        preferred = tuple(parts[-3:-1]) == ("lessons", "exercises")
        key = (0 if preferred else 1, len(parts), n)
        if parts[-1] not in best or key < best[parts[-1]]:
            best[parts[-1]] = key
    return {name: key[2] for name, key in best.items()}


def extract_answers(sub: Path, dest: Path) -> list[str]:
    """Copy the submission's ``ex11_*.py`` files into ``dest``; return their names."""
    dest.mkdir(parents=True, exist_ok=True)
    found: dict[str, bytes] = {}
    if sub.is_dir():
        files = {p.relative_to(sub).as_posix(): p for p in sub.rglob("ex11_*.py")
                 if p.is_file() and not p.is_symlink()
                 and not any(q.is_symlink() for q in p.relative_to(sub).parents if str(q) != ".")}
        for name, rel in _pick(list(files)).items():
            p = files[rel]
            if p.stat().st_size > MAX_ANSWER_BYTES:
                raise Rejected(f"{rel} is larger than {MAX_ANSWER_BYTES} bytes")
            found[name] = p.read_bytes()
    elif sub.suffix.lower() == ".zip":
        try:
            zf = zipfile.ZipFile(sub)
        except zipfile.BadZipFile as e:
            raise Rejected(f"not a valid zip file ({e})") from None
        with zf:
            for info in zf.infolist():
                n = info.filename.replace("\\", "/")
                pp = PurePosixPath(n)
                if pp.is_absolute() or ".." in pp.parts or re.match(r"^[A-Za-z]:", n):
                    raise Rejected(f"unsafe path in zip: {info.filename!r}")
            by_name = {i.filename.replace("\\", "/"): i for i in zf.infolist() if not i.is_dir()}
            for name, rel in _pick(list(by_name)).items():
                info = by_name[rel]
                if info.file_size > MAX_ANSWER_BYTES:
                    raise Rejected(f"{rel} is larger than {MAX_ANSWER_BYTES} bytes")
                with zf.open(info) as f:
                    data = f.read(MAX_ANSWER_BYTES + 1)
                if len(data) > MAX_ANSWER_BYTES:
                    raise Rejected(f"{rel} is larger than {MAX_ANSWER_BYTES} bytes")
                found[name] = data
    else:
        raise Rejected("not a folder or a .zip")
    if not found:
        raise Rejected("no ex11_*.py files found")
    for name, data in found.items():
        (dest / name).write_bytes(data)
    return sorted(found)


def find_submissions(root: Path) -> list[Path]:
    """Each folder or ``.zip`` directly inside ``root`` (hidden entries skipped)."""
    if not root.is_dir():
        raise FileNotFoundError(f"submissions: {root} is not a folder")
    return sorted(p for p in root.iterdir() if not p.name.startswith(".")
                  and (p.is_dir() or p.suffix.lower() == ".zip"))


def read_tail(path: Path, limit: int = 4000) -> str:
    """The last ``limit`` bytes of a (possibly huge) log file, decoded leniently."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - limit))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


# --------------------------------------------------------------------------- running
@dataclass
class Limits:
    timeout: float = 120.0
    per_test_timeout: float = 30.0
    memory: int = 4 << 30
    output_cap: int = 16 << 20
    disk: int = 64 << 20
    nproc: int = 64
    sandbox: str = "bwrap"  # or "guard" (--unsafe-no-sandbox)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_pytest(args: list[str], cwd: Path, env: dict, limits: Limits,
               log: Path) -> tuple[int, bool]:
    """Run the judge, ``python -m pytest ARGS``, under the limits; return
    ``(returncode, timed_out)``. stdout and stderr go to ``log``, which the output cap keeps
    small."""
    cpu = int(math.ceil(2 * limits.timeout)) + 30  # backstop only; the wall clock decides
    cmd = [sys.executable, "-m", "viddiff_mini.grading.limits", "--memory", str(limits.memory),
           "--fsize", str(limits.output_cap), "--cpu", str(cpu),
           "--", sys.executable, "-m", "pytest", *args]
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            rc = proc.wait(timeout=limits.timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid)
            rc = proc.wait()
            timed_out = True
        finally:
            _kill_group(proc.pid)  # the judge's worker (and its sandbox) goes with it
    return rc, timed_out


def _env(home: Path) -> dict:
    keep = ("PATH", "LANG", "LC_ALL", "VIDDIFF_FAST", "PYTHONPATH", "VIRTUAL_ENV", "SYSTEMROOT")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    (home / ".tmp").mkdir(exist_ok=True)
    env.update(HOME=str(home), TMPDIR=str(home / ".tmp"), OMP_NUM_THREADS="1",
               MKL_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1", PYTHONHASHSEED="0",
               PYTEST_DISABLE_PLUGIN_AUTOLOAD="1", MPLBACKEND="Agg",
               MPLCONFIGDIR=str(home / ".tmp"))
    return env


def _pytest_args(targets: list[str], answers: Path, report: Path, limits: Limits,
                 rootdir: Path, extra: list[str] | None = None) -> list[str]:
    return [*targets, "-p", "viddiff_mini.grading.plugin", "-p", "no:cacheprovider",
            "--rootdir", str(rootdir), "-c", str(rootdir / "pytest.ini"),
            "--answers", str(answers), "--grade-json", str(report),
            "--per-test-timeout", f"{limits.per_test_timeout:g}",
            "-q", "--tb=short", "--show-capture=no", "-W", "ignore", *(extra or [])]


def _worker_args(limits: Limits, uid: int, log: Path) -> list[str]:
    return ["--worker-sandbox", limits.sandbox, "--worker-memory", str(limits.memory),
            "--worker-output-cap", str(limits.output_cap), "--worker-disk", str(limits.disk),
            "--worker-nproc", str(limits.nproc), "--worker-uid", str(uid),
            "--worker-cpu", str(int(math.ceil(2 * limits.timeout)) + 30),
            "--worker-log", str(log)]


def collect_catalog(tests_src: Path, limits: Limits) -> list[dict]:
    """List the graded tests (nodeid, exercise, points, hidden) without any answers."""
    troot, _tests, _ = copy_tests(tests_src)
    work = Path(tempfile.mkdtemp(prefix="viddiff_collect_"))
    try:
        empty = work / "answers"
        empty.mkdir()
        report = work / "catalog.json"
        # Instructor code only: allow more time than a submission gets (torch imports are slow
        # on a loaded machine).
        collect_limits = Limits(max(limits.timeout, 300.0), 0.0, limits.memory, limits.output_cap)
        rc, _ = run_pytest(_pytest_args([str(troot / "tests" / "exercises")], empty, report,
                                        collect_limits, troot / "tests", ["--collect-only"]),
                           work, _env(work), collect_limits, work / "collect.log")
        if not report.is_file():
            raise RuntimeError(f"could not collect the graded tests in {tests_src} "
                               f"(pytest exit code {rc}):\n{read_tail(work / 'collect.log')}")
        tests = json.loads(report.read_text())["tests"]
        if not tests:
            raise RuntimeError(f"no graded tests found in {tests_src}")
        return tests
    finally:
        _rmtree(work)
        _rmtree(troot)


def _crash_reason(rc: int, timed_out: bool, limits: Limits) -> str:
    if timed_out:
        return f"timed out after {limits.timeout:g}s (process killed)"
    if rc < 0:
        try:
            name = signal.Signals(-rc).name
        except ValueError:
            name = f"signal {-rc}"
        if name == "SIGXFSZ":
            return f"wrote more output than allowed ({limits.output_cap} bytes)"
        if name in ("SIGXCPU", "SIGKILL"):
            return f"killed ({name}): used too much CPU time or memory"
        return f"crashed the interpreter ({name})"
    return f"ended the interpreter (exit code {rc}) in the middle of a test"


@dataclass
class Result:
    name: str
    tests: list[dict] = field(default_factory=list)
    zeroed: dict[str, str] = field(default_factory=dict)
    status: str = "graded"
    notes: list[str] = field(default_factory=list)  # in the CSV and the feedback
    private_notes: list[str] = field(default_factory=list)  # in the CSV only
    seconds: float = 0.0

    def summary(self) -> dict:
        return summarize(self.tests, self.zeroed)


def _read_report(report: Path) -> dict:
    try:
        return json.loads(report.read_text())
    except (OSError, ValueError):
        return {}


def grade_one(sub: Path, tests_src: Path, catalog: list[dict], limits: Limits,
              src_hash: str, name: str | None = None, uid: int = SANDBOX_UID_BASE) -> Result:
    """Grade one submission (see the module docstring); never raises for its misbehaviour."""
    start = time.time()
    res = Result(name or (sub.stem if sub.suffix.lower() == ".zip" else sub.name))
    records = {t["nodeid"]: dict(t, outcome="pending", message="") for t in catalog}
    work = Path(tempfile.mkdtemp(prefix="viddiff_sub_"))
    troot = None
    try:
        answers = work / "submission"
        try:
            found = extract_answers(sub, answers)
        except Rejected as e:
            res.status = "rejected"
            res.notes.append(str(e))
            for r in records.values():
                r["outcome"], r["message"] = "zeroed", f"submission rejected: {e}"
            res.zeroed = {t["exercise"]: f"submission rejected: {e}" for t in catalog}
            return res
        expected = sorted({f"ex11_{m.group(1)}.py" for t in catalog
                           if (m := re.search(r"test_ex11_([0-9]+)", t["nodeid"], re.ASCII))})
        missing = [m for m in expected if m not in found]
        if missing:
            res.notes.append("missing " + ", ".join(missing))
        # the sandboxed worker (an unprivileged uid when we are root) reads these, read-only
        answers.chmod(0o755)
        for f in answers.iterdir():
            f.chmod(0o644)
        troot, _tests_dir, tests_hash = copy_tests(tests_src)
        rootdir = troot / "tests"  # catalog nodeids are relative to a rootdir laid out so
        report_dir = work / "report"  # the judge's only: the worker never sees this folder
        report_dir.mkdir()
        report = report_dir / "grade.json"
        judge = work / "judge"  # the judge's cwd and HOME: empty, its own
        judge.mkdir()
        env = _env(judge)
        remaining = list(records)
        run = 0
        while remaining:
            run += 1
            report.unlink(missing_ok=True)
            log = work / f"pytest_{run}.log"  # a fresh capped log per process
            args = _pytest_args([str(rootdir / n) for n in remaining], answers, report, limits,
                                rootdir, _worker_args(limits, uid, work / f"worker_{run}.log"))
            rc, timed_out = run_pytest(args, judge, env, limits, log)
            if tree_hash(rootdir) != tests_hash or tree_hash(tests_src) != src_hash:
                res.status = "tests modified"
                res.notes.append("the submission changed the grading tests: score 0")
                for r in records.values():
                    r["outcome"], r["message"] = "zeroed", "grading tests modified"
                res.zeroed = {t["exercise"]: "grading tests modified" for t in catalog}
                return res
            data = _read_report(report)
            progress = False
            for t in data.get("tests", []):
                rec = records.get(t["nodeid"])
                if rec is not None and t["outcome"] != "pending" and rec["outcome"] == "pending":
                    rec.update(outcome=t["outcome"], message=t["message"])
                    progress = True
                    if t["outcome"] in ZEROING and rec["exercise"] not in res.zeroed:
                        reason = f"{ZEROING[t['outcome']]}: {one_line(t['message'], 150)}"
                        res.zeroed[rec["exercise"]] = reason
                        res.notes.append(f"{rec['exercise']}: {reason}")
            if data.get("complete"):
                break
            current = data.get("current")
            if current in records:
                ex = records[current]["exercise"]
                reason = _crash_reason(rc, timed_out, limits)
                if ex not in res.zeroed:
                    res.zeroed[ex] = reason
                    res.notes.append(f"{ex}: {reason}")
                progress = True
            if not progress:
                text = read_tail(log, 600).strip()
                tail = one_line(text.splitlines()[-1], 200) if text else ""
                reason = (_crash_reason(rc, timed_out, limits) if (timed_out or rc < 0)
                          else f"grading process failed (exit code {rc})")
                res.status = "error"
                res.notes.append(reason)
                if tail:  # the judge's log may quote hidden tests: the CSV only, not feedback
                    res.private_notes.append(f"judge log: {tail}")
                for n in remaining:
                    res.zeroed.setdefault(records[n]["exercise"], reason)
                break
            remaining = [n for n, r in records.items()
                         if r["outcome"] == "pending" and r["exercise"] not in res.zeroed]
        for r in records.values():
            if r["exercise"] in res.zeroed and r["outcome"] in ("pending", "passed", "skipped"):
                r["outcome"], r["message"] = "zeroed", res.zeroed[r["exercise"]]
            elif r["outcome"] == "pending":
                r["outcome"] = "failed"
        return res
    except Exception as e:  # a bug in the grader itself must not stop the batch
        res.status = "error"
        res.notes.append(f"grader error: {type(e).__name__}: {e}")
        for r in records.values():
            if r["outcome"] == "pending":
                r["outcome"], r["message"] = "zeroed", "grader error"
        return res
    finally:
        res.tests = list(records.values())
        res.seconds = round(time.time() - start, 2)
        if troot is not None:
            _rmtree(troot)
        _rmtree(work)


# --------------------------------------------------------------------------- outputs
def feedback(res: Result) -> dict:
    """Public feedback: hidden tests are neither named nor explained."""
    s = res.summary()
    tests, k = [], 0
    for t in sorted(res.tests, key=lambda t: (exercise_sort_key(t["exercise"]), t["nodeid"])):
        if t.get("hidden"):
            k += 1
            name = f"hidden test {k}"
            msg = "" if t["outcome"] == "passed" else (
                res.zeroed.get(t["exercise"], HIDDEN_MESSAGE) if t["outcome"] == "zeroed"
                else HIDDEN_MESSAGE)
        else:
            name, msg = t["nodeid"].split("::")[-1], t["message"]
        tests.append({"test": name, "exercise": t["exercise"], "points": t["points"],
                      "outcome": t["outcome"], "hidden": bool(t.get("hidden")), "message": msg})
    return {"submission": res.name, "status": res.status, "notes": res.notes,
            "earned": s["earned"], "possible": s["possible"],
            "exercises": [{k2: e[k2] for k2 in ("exercise", "passed", "tests", "earned",
                                                "possible", "status", "message")}
                          for e in s["exercises"]],
            "tests": tests}


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value) -> str:
    """A CSV cell a spreadsheet shows as text: a leading ``= + - @``, tab or CR (which
    Excel, LibreOffice and Google Sheets would read as a formula) gets a ``'`` prefix."""
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def write_csv(path: Path, exercises: list[str], results: list[Result]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow([csv_cell(c) for c in ["submission", *exercises, "total", "possible", "status",
                                      "notes"]])
    for r in sorted(results, key=lambda r: r.name):
        per = {e["exercise"]: e["earned"] for e in r.summary()["exercises"]}
        s = r.summary()
        w.writerow([csv_cell(c) for c in [
            r.name, *[f"{per.get(e, 0.0):g}" for e in exercises], f"{s['earned']:g}",
            f"{s['possible']:g}", r.status, "; ".join(r.notes + r.private_notes)]])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(buf.getvalue())
    os.replace(tmp, path)


def summary_text(exercises: list[str], results: list[Result], possible: dict[str, float]) -> str:
    if not results:
        return "no submissions graded"
    lines = [f"graded {len(results)} submission(s)"]
    totals = [r.summary()["earned"] for r in results]
    total_possible = sum(possible.values())
    lines.append(f"total: mean {sum(totals) / len(totals):.2f} / {total_possible:g}, "
                 f"min {min(totals):g}, max {max(totals):g}")
    lines.append(f"{'exercise':<10} {'mean':>7} {'possible':>8}  full / partial / zero")
    for ex in exercises:
        vals = [next((e["earned"] for e in r.summary()["exercises"] if e["exercise"] == ex), 0.0)
                for r in results]
        full = sum(v == possible[ex] for v in vals)
        zero = sum(v == 0 for v in vals)
        lines.append(f"{ex:<10} {sum(vals) / len(vals):>7.2f} {possible[ex]:>8g}  "
                     f"{full} / {len(vals) - full - zero} / {zero}")
    bad = [r for r in results if r.status != "graded"]
    if bad:
        lines.append("not graded normally: " + ", ".join(f"{r.name} ({r.status})" for r in bad))
    return "\n".join(lines)


def write_histogram(path: Path, results: list[Result], total_possible: float) -> None:
    # the Figure API draws without pyplot: no backend switch, so a notebook that calls
    # this keeps showing its own figures inline
    from matplotlib.figure import Figure

    totals = [r.summary()["earned"] for r in results]
    fig = Figure(figsize=(6, 3.5))
    ax = fig.subplots()
    ax.hist(totals, bins=min(20, max(1, int(total_possible) + 1)), range=(0, total_possible),
            color="#4a7ab5", edgecolor="white")
    ax.set_xlabel(f"total points (of {total_possible:g})")
    ax.set_ylabel("submissions")
    ax.set_title(f"{len(totals)} submissions")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


def grade_all(submissions, tests, out, *, feedback_dir=None, timeout=120.0,
              per_test_timeout=None, memory=4 << 30, output_cap=16 << 20, disk=64 << 20,
              nproc=64, sandbox="bwrap", jobs=1, histogram=None, progress=True) -> dict:
    """Grade every submission; always writes the CSV. Returns ``{"results", "text", ...}``.

    ``sandbox``: ``"bwrap"`` (refuses to run when bubblewrap cannot start a sandbox here)
    or ``"guard"`` (``--unsafe-no-sandbox``: limits and the audit guard only).
    """
    subs_root, tests_src, out = Path(submissions), Path(tests).resolve(), Path(out)
    if not tests_src.is_dir():
        raise FileNotFoundError(f"--tests: {tests_src} is not a folder")
    if jobs < 1:
        raise ValueError(f"--jobs: expected >= 1, got {jobs}")
    if sandbox not in ("bwrap", "guard"):
        raise ValueError(f"sandbox: expected 'bwrap' or 'guard', got {sandbox!r}")
    if sandbox == "bwrap":
        problem = bwrap_problem()
        if problem:
            raise RuntimeError(f"{problem}. Refusing to run submissions without the sandbox; "
                               f"--unsafe-no-sandbox grades anyway (only for code you trust: "
                               f"it can read the solutions and the other submissions)")
    limits = Limits(timeout=float(timeout),
                    per_test_timeout=float(per_test_timeout if per_test_timeout is not None
                                           else min(30.0, timeout)),
                    memory=int(memory), output_cap=int(output_cap), disk=int(disk),
                    nproc=int(nproc), sandbox=sandbox)
    subs = find_submissions(subs_root)
    # A submission's name: the folder name or the zip's stem (the file name if both exist).
    stems = [s.stem if s.suffix.lower() == ".zip" else s.name for s in subs]
    names = {s: (st if stems.count(st) == 1 else s.name) for s, st in zip(subs, stems)}
    fb_dir = Path(feedback_dir) if feedback_dir else out.with_name(out.stem + "_feedback")
    src_hash = tree_hash(tests_src)
    catalog = collect_catalog(tests_src, limits)
    exercises = sorted({t["exercise"] for t in catalog}, key=exercise_sort_key)
    possible = {ex: sum(t["points"] for t in catalog if t["exercise"] == ex) for ex in exercises}
    results: list[Result] = []
    lock = threading.Lock()
    write_csv(out, exercises, results)  # a CSV exists from the start

    def done(res: Result) -> None:
        with lock:
            results.append(res)
            fb_dir.mkdir(parents=True, exist_ok=True)
            name = re.sub(r"[^A-Za-z0-9_.-]", "_", res.name) or "submission"
            (fb_dir / f"{name}.json").write_text(json.dumps(feedback(res), indent=1))
            write_csv(out, exercises, results)

    bar = None
    if progress:
        from viddiff_mini.utils import tqdm
        bar = tqdm(total=len(subs), desc="grading", unit="submission")
    try:
        slots: queue.Queue[int] = queue.Queue()
        for k in range(jobs):
            slots.put(k)

        def one(sub: Path) -> Result:  # each job slot has its own sandbox uid
            k = slots.get()
            try:
                return grade_one(sub, tests_src, catalog, limits, src_hash, names[sub],
                                 uid=SANDBOX_UID_BASE + k)
            finally:
                slots.put(k)

        with cf.ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = {pool.submit(one, s): s for s in subs}
            for fut in cf.as_completed(futures):
                sub = futures[fut]
                try:
                    res = fut.result()
                except Exception as e:  # pragma: no cover - grade_one catches its own errors
                    res = Result(names[sub], status="error", notes=[f"grader error: {e}"],
                                 tests=[dict(t, outcome="zeroed", message="grader error")
                                        for t in catalog])
                done(res)
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
        write_csv(out, exercises, results)
    text = summary_text(exercises, results, possible)
    if histogram:
        write_histogram(Path(histogram), results, sum(possible.values()))
    return {"results": sorted(results, key=lambda r: r.name), "exercises": exercises,
            "possible": possible, "text": text, "csv": out, "feedback": fb_dir}
