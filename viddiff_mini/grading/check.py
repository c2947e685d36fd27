"""``check("11.1.1a")``: run one exercise's graded tests and show the grade table inline.

The tests run in a subprocess (``python -m pytest tests/exercises --exercise 11.1.1a``), and
the answer in a worker process of that one (see :mod:`.remote`), so a crash or an endless
loop in the answer never takes the notebook kernel down, and every run sees the file as it
is on disk now.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .answers import exercise_tests_dir, repo_root, resolve_answers_dir
from .report import format_table, html_table


def plugin_args() -> list[str]:
    """``-p viddiff_mini.grading.plugin`` unless pytest already loads the plugin through the
    installed package's ``pytest11`` entry point (naming it twice is an error)."""
    from importlib.metadata import entry_points

    for ep in entry_points(group="pytest11"):
        if ep.value == "viddiff_mini.grading.plugin":
            return []
    return ["-p", "viddiff_mini.grading.plugin"]


@dataclass
class CheckResult:
    """What ``check`` found: points and the per-exercise summary rows."""

    exercise: str
    earned: float = 0.0
    possible: float = 0.0
    summary: dict = field(default_factory=dict)
    error: str = ""
    note: str = ""  # e.g. the test process died part-way (a crash in the answer)

    @property
    def all_passed(self) -> bool:
        """True when every *public* test of this run passed."""
        return not self.error and self.possible > 0 and self.earned == self.possible

    def text(self) -> str:
        return self.error or format_table(self.summary) + (f"\n{self.note}" if self.note else "")

    def html(self) -> str:
        import html as _html

        if self.error:
            return f"<pre>{_html.escape(self.error)}</pre>"
        note = f"<p><b>{_html.escape(self.note)}</b></p>" if self.note else ""
        return html_table(self.summary) + note

    def __repr__(self) -> str:
        return f"CheckResult({self.exercise!r}: {self.earned:g}/{self.possible:g} points)"


def _in_jupyter() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    ip = get_ipython()
    return ip is not None and hasattr(ip, "kernel")


def _show(result: CheckResult) -> None:
    if _in_jupyter():
        from IPython.display import HTML, display
        display(HTML(result.html()))
    else:
        print(result.text())


def _test_files(tests_dir: Path, exercise: str) -> list[str]:
    """Only the graded files of the exercise's lesson (``11.2.1a`` -> ``test_ex11_2*.py``).

    Collecting one lesson's file instead of the whole folder keeps a notebook's check cell
    to a couple of seconds; an id without a lesson number (``"11"``) runs the folder.
    """
    parts = exercise.strip().split(".")
    if len(parts) >= 2 and all(p.isascii() and p.isdigit() for p in parts[:2]):
        files = sorted(tests_dir.glob(f"test_ex{parts[0]}_{parts[1]}*.py"))
        if files:
            return [str(f) for f in files]
    return [str(tests_dir)]


def check(exercise: str, answers: str | os.PathLike | None = None, *, timeout: float = 600,
          per_test_timeout: float = 120, show: bool = True,
          tests: str | os.PathLike | None = None) -> CheckResult:
    """Run the graded tests of ``exercise`` (e.g. ``"11.1.1a"``, or ``"11.1"`` for a section)
    on the current answers and show the grade table (HTML in Jupyter, text elsewhere).

    ``answers``: ``"stubs"``, ``"solutions"`` or a folder; default ``$VIDDIFF_ANSWERS``
    or your stubs in ``lessons/exercises``. Returns a :class:`CheckResult`.
    """
    if not isinstance(exercise, str) or not exercise.strip():
        raise ValueError(f"exercise: expected an id such as '11.1.1a', got {exercise!r}")
    folder = resolve_answers_dir(answers)
    tests_dir = Path(tests) if tests is not None else exercise_tests_dir()
    if not tests_dir.is_dir():
        raise FileNotFoundError(f"tests: graded tests folder {tests_dir} not found")
    with tempfile.TemporaryDirectory(prefix="viddiff_check_") as tmp:
        report = Path(tmp) / "grade.json"
        cmd = [sys.executable, "-m", "pytest", *_test_files(tests_dir, exercise), "-q",
               "-p", "no:cacheprovider",
               *plugin_args(), "--rootdir", str(repo_root()), "--answers", str(folder),
               "--exercise", exercise, "--grade-json", str(report),
               "--per-test-timeout", str(per_test_timeout)]
        # The package importable from the child even in a source checkout that was never
        # pip-installed (the child runs in a temp folder).
        path = os.pathsep.join(p for p in (str(repo_root()), os.environ.get("PYTHONPATH", ""))
                               if p)
        env = dict(os.environ, VIDDIFF_ANSWERS=str(folder), PYTHONPATH=path)
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                                  env=env, cwd=tmp)
        except subprocess.TimeoutExpired:
            result = CheckResult(exercise, error=f"check({exercise!r}): the tests did not finish "
                                                 f"within {timeout:g}s (an endless loop?)")
        else:
            if report.is_file():
                data = json.loads(report.read_text())
                result = CheckResult(exercise, data["earned"], data["possible"],
                                     {"exercises": data["exercises"], "earned": data["earned"],
                                      "possible": data["possible"],
                                      "hidden_included": any(t["hidden"] for t in data["tests"])})
                if not data["exercises"]:
                    result.error = f"check({exercise!r}): no graded tests for this exercise"
                elif not data.get("complete"):
                    where = data.get("current") or "between tests"
                    result.note = (f"The test process stopped early (exit code "
                                   f"{proc.returncode}) while running {where}: a crash or "
                                   f"os._exit in your code? Tests after it did not run.")
            elif proc.returncode == 5:
                result = CheckResult(exercise, error=f"check({exercise!r}): no graded tests found "
                                                     f"for this exercise in {tests_dir}")
            else:
                tail = (proc.stdout + proc.stderr)[-3000:]
                result = CheckResult(exercise, error=f"check({exercise!r}): pytest failed "
                                                     f"(exit code {proc.returncode}):\n{tail}")
    if show:
        _show(result)
    return result
