"""Meta-checks of the graded tests (run in CI; instructor only).

This file lives next to the graded tests but is not one: its module-level
``pytestmark = pytest.mark.instructor`` exempts it from the plugin's points check, keeps
it out of every grade table and out of the student handout (it needs the pristine stubs).

* every graded test FAILS on the stubs (none passes by accident): one subprocess runs all
  graded files with ``--answers=stubs`` and the JSON report lists any that passed;
* the stubs are pristine: each public function's body is its docstring plus
  ``raise NotImplementedError("Exercise 11.N.ka: ...")``, with the same name and
  signature as in ``solutions/``;
* a graded file without points marks cannot be collected;
* every mutant of ``scripts/mutation_check.py`` (a plausible student bug per exercise)
  still applies to ``solutions/`` and names an exercise that has graded tests (the full
  mutation run takes minutes: run the script itself).
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from viddiff_mini.grading.answers import exercise_tests_dir, repo_root, solutions_dir, stubs_dir
from viddiff_mini.grading.assign import classify_test_file

pytestmark = pytest.mark.instructor

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "VIDDIFF_FAST": "1"}
STUB_RE = re.compile(r"^Exercise 11\.\d+\.\d+[a-z]: \S")


def graded_files() -> list[Path]:
    """The graded test files: ``tests/exercises/test_*.py`` that are not instructor files."""
    return [p for p in sorted(exercise_tests_dir().glob("test_*.py"))
            if classify_test_file(p) != "instructor"]


def _pytest(args: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
                          capture_output=True, text=True, cwd=cwd, env=ENV, timeout=timeout)


def test_every_graded_test_fails_on_the_stubs(tmp_path):
    files = graded_files()
    assert files, f"no graded test files in {exercise_tests_dir()}"
    report = tmp_path / "grade.json"
    proc = _pytest([*map(str, files), "-q", "--answers=stubs", f"--grade-json={report}",
                    "--per-test-timeout=60", "--tb=no"], cwd=repo_root())
    assert report.is_file(), (f"the graded tests did not run (exit code {proc.returncode}):\n"
                              + (proc.stdout + proc.stderr)[-3000:])
    data = json.loads(report.read_text())
    assert data["complete"], "the run on the stubs did not finish:\n" + proc.stdout[-3000:]
    passed = [t["nodeid"] for t in data["tests"] if t["outcome"] == "passed"]
    assert not passed, ("these graded tests PASS on the stubs (they test nothing the student "
                        "writes):\n  " + "\n  ".join(passed))
    assert len(data["tests"]) > 0


def _public_functions(path: Path) -> dict[str, ast.FunctionDef]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {n.name: n for n in tree.body
            if isinstance(n, ast.FunctionDef) and not n.name.startswith("_")}


def _signature(fn: ast.FunctionDef) -> str:
    return ast.unparse(fn.args)


@pytest.mark.parametrize("stub", sorted(stubs_dir().glob("ex11_*.py")), ids=lambda p: p.name)
def test_stubs_are_pristine_and_match_the_solutions(stub):
    problems = []
    stubs = _public_functions(stub)
    solved = _public_functions(solutions_dir() / stub.name)
    if set(stubs) != set(solved):
        problems.append(f"functions differ: only in the stub {sorted(set(stubs) - set(solved))}, "
                        f"only in the solution {sorted(set(solved) - set(stubs))}")
    for name, fn in stubs.items():
        body = fn.body
        doc = ast.get_docstring(fn)
        if not doc:
            problems.append(f"{name}: no docstring (the student needs the task and shapes)")
        rest = body[1:] if doc else body
        ok = (len(rest) == 1 and isinstance(rest[0], ast.Raise)
              and isinstance(rest[0].exc, ast.Call)
              and getattr(rest[0].exc.func, "id", None) == "NotImplementedError"
              and len(rest[0].exc.args) == 1 and isinstance(rest[0].exc.args[0], ast.Constant)
              and STUB_RE.match(str(rest[0].exc.args[0].value)))
        if not ok:
            problems.append(f"{name}: the body must be exactly "
                            f"raise NotImplementedError(\"Exercise 11.N.ka: <what to do>\")")
        if name in solved and _signature(fn) != _signature(solved[name]):
            problems.append(f"{name}: signature ({_signature(fn)}) differs from the "
                            f"solution's ({_signature(solved[name])})")
    assert not problems, f"{stub.name}:\n  " + "\n  ".join(problems)


def test_graded_file_without_points_fails_collection(tmp_path):
    ex = tmp_path / "exercises"
    ex.mkdir()
    (ex / "test_ex11_99.py").write_text(
        "import pytest\n\n\n@pytest.mark.exercise('11.99.1a')\n"
        "def test_forgot_points(answers):\n    assert True\n")
    (ex / "test_tooling.py").write_text(  # exempt: an instructor file
        "import pytest\n\npytestmark = pytest.mark.instructor\n\n\n"
        "def test_ok():\n    assert True\n")
    proc = _pytest([str(ex), "-q", "--answers=stubs"], cwd=tmp_path, timeout=120)
    assert proc.returncode == pytest.ExitCode.USAGE_ERROR, proc.stdout + proc.stderr
    assert "@pytest.mark.points(n)" in proc.stderr
    assert "test_ex11_99.py::test_forgot_points" in proc.stderr
    assert "test_tooling.py" not in proc.stderr


def _mutation_script():
    import importlib.util

    path = repo_root() / "scripts" / "mutation_check.py"
    spec = importlib.util.spec_from_file_location("viddiff_mutation_check", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look the module up while defining
    spec.loader.exec_module(module)
    return module


def test_mutants_apply(tmp_path):
    import shutil

    mc = _mutation_script()
    assert mc.MUTANTS, "no mutants defined"
    graded = set()
    for path in graded_files():
        graded |= set(re.findall(r'@pytest\.mark\.exercise\("([0-9.a-z]+)"\)', path.read_text()))
    problems = []
    for m in mc.MUTANTS:
        if m.exercise not in graded:
            problems.append(f"{m.exercise} '{m.what}': no graded test for this exercise")
        folder = tmp_path / "answers"
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(solutions_dir(), folder)
        try:
            mc.apply(m, folder)
            ast.parse((folder / f"{m.module}.py").read_text())
        except (LookupError, SyntaxError) as e:
            problems.append(str(e))
    assert not problems, "stale mutants in scripts/mutation_check.py:\n  " + "\n  ".join(problems)
