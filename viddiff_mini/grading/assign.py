"""``viddiff assign OUT/``: write the student handout (no solutions, no hidden tests).

What goes into ``OUT/``:

* ``viddiff_mini/`` (the package, caches left out), ``pyproject.toml``,
  ``environment.yml`` and a ``README.md`` for students (install, run a notebook, run the
  graded tests and read the grade table, hand in);
* ``lessons/``: every notebook *as executed* (its lesson outputs and figures are part of
  the reading), except that the cells tagged ``exercise-check`` (the cells that run the
  student's answer and its graded check) lose their outputs and execution counts: run by
  the instructor they would show an answer; other lesson files as they are, and
  ``lessons/exercises/ex11_*.py``, the stubs;
* ``tests/``: the public tests. Left out wholesale: files named ``test_*_hidden.py`` and
  files whose module-level ``pytestmark`` holds ``pytest.mark.hidden`` (hidden graded
  tests) or ``pytest.mark.instructor`` (tests of the course tooling, e.g. the meta-checks,
  which need ``solutions/``). Inside the other files, every test function, method or
  class decorated with ``@pytest.mark.hidden`` is cut out of the source (by line range,
  so the rest of the file keeps its comments and layout); a file left with no tests is
  dropped. Keep helpers that only hidden tests need in a ``test_*_hidden.py`` file: a
  helper in a public file is handed out. Hidden cases inside ``pytest.param(...,
  marks=pytest.mark.hidden)`` are not supported (make them a hidden test).

Never copied: ``solutions/``, ``.git``, CI files, build folders, run outputs.

Before returning, the handout is checked for solution code: the body of every function in
``solutions/*.py`` (normalised with ``ast``, nested functions included) must not appear in
any handout file, also not as a run of statements inside a longer body
(:func:`find_leaks`); if one does, the handout is removed again and the command fails,
naming the file and the function. Not counted: bodies under 40 characters (``return x``
is no evidence) and private helpers given to the student (``_name`` with the same body in
the stub file).

``OUT`` must be empty or missing; ``--force`` empties it first (never the source tree).
"""

from __future__ import annotations

import argparse
import ast
import re
import shutil
import sys
import textwrap
from pathlib import Path

from .answers import repo_root

HIDDEN_SUFFIX = "_hidden.py"
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", ".ipynb_checkpoints",
                                 ".pytest_cache", "grade.json")
# Short bodies ("return x") are shared by unrelated code; they cannot identify a solution.
MIN_BODY_CHARS = 40


# --------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", help="folder to write the handout to (must be empty)")
    parser.add_argument("--force", action="store_true",
                        help="empty OUT first if it is not empty")
    parser.add_argument("--source", default=None,
                        help="course repository to build from (default: this checkout)")


def main(args) -> int:
    try:
        summary = write_handout(args.out, source=args.source, force=args.force)
    except (FileExistsError, FileNotFoundError, ValueError, RuntimeError) as e:
        print(f"viddiff assign: {e}", file=sys.stderr)
        return 1
    print(summary["text"])
    return 0


# --------------------------------------------------------------------------- marks in test files
def _mark_names(expr: ast.AST) -> set[str]:
    """Names ``X`` of every ``pytest.mark.X`` / ``mark.X`` (called or not) inside ``expr``."""
    names = set()
    for node in ast.walk(expr):
        if isinstance(node, ast.Attribute) and (
                (isinstance(node.value, ast.Attribute) and node.value.attr == "mark")
                or (isinstance(node.value, ast.Name) and node.value.id == "mark")):
            names.add(node.attr)
    return names


def module_marks(tree: ast.Module) -> set[str]:
    """Marks of the module-level ``pytestmark = ...`` (a mark or a list of marks)."""
    marks: set[str] = set()
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else (
            [node.target] if isinstance(node, ast.AnnAssign) and node.value is not None else [])
        if any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in targets):
            marks |= _mark_names(node.value)
    return marks


def classify_test_file(path: Path) -> str:
    """``"hidden"``, ``"instructor"`` or ``"public"`` for a test file (see the module doc)."""
    if path.name.endswith(HIDDEN_SUFFIX):
        return "hidden"
    try:
        marks = module_marks(ast.parse(path.read_text(encoding="utf-8")))
    except SyntaxError as e:
        raise ValueError(f"{path}: cannot parse ({e.msg}, line {e.lineno})") from None
    if "instructor" in marks:
        return "instructor"
    if "hidden" in marks:
        return "hidden"
    return "public"


def strip_hidden(source: str) -> tuple[str, list[str]]:
    """Cut every ``@pytest.mark.hidden`` function / class out of ``source``.

    Returns ``(new_source, removed_names)``; decorators and bodies go, everything else stays.
    """
    tree = ast.parse(source)
    spans, names = [], []

    def visit(body):
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                if any("hidden" in _mark_names(d) for d in node.decorator_list):
                    first = min([node.lineno] + [d.lineno for d in node.decorator_list])
                    spans.append((first, node.end_lineno))
                    names.append(node.name)
                elif isinstance(node, ast.ClassDef):
                    visit(node.body)

    visit(tree.body)
    if not spans:
        return source, []
    lines = source.splitlines(keepends=True)
    for first, last in sorted(spans, reverse=True):
        del lines[first - 1:last]
    text = re.sub(r"\n{4,}", "\n\n\n", "".join(lines))  # no holes left behind
    ast.parse(text)  # still valid Python (a class emptied of all its tests would not be)
    return text, names


def _has_tests(source: str) -> bool:
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and \
                node.name.startswith("test"):
            return True
    return False


# --------------------------------------------------------------------------- leak check
def _body_statements(fn: ast.AST) -> list[ast.stmt]:
    body = list(fn.body)
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        body = body[1:]  # the docstring is shared with the stub on purpose
    return body


def _unparse(stmts: list[ast.stmt]) -> list[str]:
    return [ast.unparse(s) for s in stmts]


def _functions(path: Path):
    """``(qualified name, node)`` of every function in a file (nested ones and methods
    included, e.g. ``outer.inner``)."""
    if not path.is_file():
        return []
    found = []

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = prefix + child.name
                if not isinstance(child, ast.ClassDef):
                    found.append((name, child))
                visit(child, name + ".")
            else:
                visit(child, prefix)

    visit(ast.parse(path.read_text(encoding="utf-8")), "")
    return found


def solution_bodies(solutions: Path, stubs: Path | None = None) -> dict[str, list[str]]:
    """``"file.py:function" -> normalised statements`` of every function body (nested ones
    and methods included) in ``solutions/*.py``. Left out: bodies shorter than
    :data:`MIN_BODY_CHARS`, and helpers *given* to the student: a private (``_name``)
    function whose body is also in the stub file of the same name (``stubs/file.py``).
    An exercise function solved in the stub is a leak like any other."""
    out = {}
    for path in sorted(solutions.glob("*.py")):
        given = set()
        if stubs is not None:
            given = {"\n".join(_unparse(_body_statements(n))) for _, n in
                     _functions(stubs / path.name)}
        for name, node in _functions(path):
            stmts = _unparse(_body_statements(node))
            text = "\n".join(stmts)
            private = name.rsplit(".", 1)[-1].startswith("_")
            if len(text) >= MIN_BODY_CHARS and not (private and text in given):
                out[f"{path.name}:{name}"] = stmts
    return out


def _python_of(path: Path) -> list[str]:
    """The Python sources in a handout file: the file itself, or a notebook's code cells."""
    if path.suffix == ".py":
        return [path.read_text(encoding="utf-8", errors="replace")]
    if path.suffix == ".ipynb":
        import nbformat

        nb = nbformat.read(str(path), as_version=4)
        cells = []
        for c in nb.cells:
            if c.cell_type == "code":
                # IPython magics and shell lines are not Python: blank them out.
                cells.append("\n".join("" if ln.lstrip().startswith(("%", "!")) else ln
                                       for ln in c.source.splitlines()))
        return cells
    return []


def _notebook_text(path: Path) -> str:
    """A notebook's cell sources and the text of its kept outputs (streams, plain-text
    results, tracebacks): a printed solution (``inspect.getsource``) is a leak too."""
    import nbformat

    parts = []
    for c in nbformat.read(str(path), as_version=4).cells:
        parts.append(c.source)
        for o in c.get("outputs", []):
            if "text" in o:
                parts.append(o["text"] if isinstance(o["text"], str) else "".join(o["text"]))
            plain = o.get("data", {}).get("text/plain")
            if plain:
                parts.append(plain if isinstance(plain, str) else "".join(plain))
            if o.get("traceback"):
                parts.append("\n".join(o["traceback"]))
    return "\n".join(parts)


def _blocks(source: str) -> list[list[str]]:
    """Every statement list (module, function, loop, branch bodies) of ``source``,
    normalised; [] if it does not parse."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    blocks = []
    for node in ast.walk(tree):
        for name in ("body", "orelse", "finalbody"):
            stmts = getattr(node, name, None)
            if isinstance(stmts, list) and stmts and isinstance(stmts[0], ast.stmt):
                blocks.append(_unparse(stmts))
    return blocks


def _squash(text: str) -> str:
    return "\n".join(ln.strip() for ln in text.splitlines() if ln.strip())


def find_leaks(handout: Path, solutions: Path, stubs: Path | None = None) -> list[str]:
    """Where a solution function's body appears in ``handout``: ``["path: file.py:fn"]``.

    Python files and notebook code cells are compared statement by statement after
    ``ast`` normalisation (layout, comments and quoting do not matter; the body may sit at
    any depth and among other statements); other text files, and a notebook's sources with
    its kept outputs, are searched for the body's source lines. ``stubs``: the stub
    folder, whose given helpers are not solutions.
    """
    handout = Path(handout)
    bodies = solution_bodies(Path(solutions), Path(stubs) if stubs is not None else None)
    raw = {}
    for path in sorted(Path(solutions).glob("*.py")):
        text = path.read_text(encoding="utf-8")
        for name, node in _functions(path):
            key = f"{path.name}:{name}"
            stmts = _body_statements(node)
            if key in bodies and stmts:
                seg = "\n".join(ast.get_source_segment(text, s, padded=True) or ""
                                for s in stmts)
                raw[key] = _squash(textwrap.dedent(seg))
    leaks = []
    for path in sorted(p for p in handout.rglob("*") if p.is_file()):
        rel = path.relative_to(handout).as_posix()
        sources = _python_of(path)
        if sources:
            blocks = [b for src in sources for b in _blocks(src)]
            for key, stmts in bodies.items():
                n = len(stmts)
                if any(block[i:i + n] == stmts for block in blocks
                       for i in range(len(block) - n + 1)):
                    leaks.append(f"{rel}: {key}")
        if path.suffix != ".py":
            try:
                if path.suffix == ".ipynb":  # search the cells, not the escaped JSON
                    text = _notebook_text(path)
                else:
                    text = path.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError, ValueError):
                continue
            text = _squash(text)
            for key, seg in raw.items():
                if seg and seg in text and f"{rel}: {key}" not in leaks:
                    leaks.append(f"{rel}: {key}")
    return leaks


# --------------------------------------------------------------------------- writing
def _clear_notebook(src: Path, dst: Path) -> int:
    """Copy a notebook, clearing the outputs and execution counts of its exercise cells.

    Lesson cells keep their outputs (text, tables, figures): the handout reads like the
    executed course notebook. A code cell tagged ``exercise-check``
    (:data:`viddiff_mini.lessons_tools.EXERCISE_TAG`) runs the student's answer; executed
    with the solutions its output would reveal the answer, so it is cleared. Returns the
    number of exercise cells cleared.
    """
    import nbformat

    from ..lessons_tools import EXERCISE_TAG

    nb = nbformat.read(str(src), as_version=4)
    cleared = 0
    for cell in nb.cells:
        if cell.cell_type == "code" and EXERCISE_TAG in cell.metadata.get("tags", []):
            cell.outputs = []
            cell.execution_count = None
            cleared += 1
        for key in ("execution", "collapsed", "scrolled", "ExecuteTime"):
            cell.metadata.pop(key, None)
    nb.metadata.pop("widgets", None)
    dst.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(dst))
    return cleared


def _prepare_out(out: Path, source: Path, force: bool) -> None:
    out_r, src_r = out.resolve(), source.resolve()
    if out_r == src_r or src_r.is_relative_to(out_r):
        raise ValueError(f"OUT: {out} holds the course repository itself; pick another folder")
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"OUT: {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise FileExistsError(f"OUT: {out} is not empty; use --force to replace its "
                                  f"contents")
        for p in out.iterdir():
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
    out.mkdir(parents=True, exist_ok=True)


def _copy_tests(src: Path, dst: Path, report: dict) -> None:
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if any(part in ("__pycache__", ".pytest_cache") for part in rel.parts) or \
                path.suffix == ".pyc" or path.is_dir():
            continue
        target = dst / rel
        if path.suffix == ".py" and path.name.startswith("test"):
            kind = classify_test_file(path)
            if kind != "public":
                report["excluded"].append(f"tests/{rel.as_posix()} ({kind})")
                continue
            text = path.read_text(encoding="utf-8")
            text, removed = strip_hidden(text)
            if removed:
                report["stripped"].append(f"tests/{rel.as_posix()}: {', '.join(removed)}")
                if not _has_tests(text):
                    report["excluded"].append(f"tests/{rel.as_posix()} (only hidden tests)")
                    continue
            if re.search(r"solutions_dir|[\"']solutions[\"']|solutions/", text):
                report["warnings"].append(f"tests/{rel.as_posix()} mentions solutions/ and "
                                          f"will fail in the handout")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)


def _exercise_list(stubs: Path) -> list[tuple[str, str, str]]:
    """``(id, file, what to do)`` from the stubs' NotImplementedError messages."""
    found = []
    for path in sorted(stubs.glob("ex11_*.py")):
        for m in re.finditer(r"Exercise\s+(11\.\d+\.\d+[a-z]?)\s*:\s*([^\"']*)",
                             path.read_text(encoding="utf-8")):
            found.append((m.group(1), f"lessons/exercises/{path.name}", m.group(2).strip()))
    return found


def student_readme(exercises: list[tuple[str, str, str]], notebooks: list[str]) -> str:
    ex_lines = "\n".join(f"| {e} | `{f}` | {what} |" for e, f, what in exercises) or \
        "| (none yet) | | |"
    nb_lines = "\n".join(f"* `{n}`" for n in notebooks) or "* (notebooks are added per lab)"
    return f"""# Video diffusion models (chapter 11): lab handout

This folder is your lab: the `viddiff_mini` library, one notebook per section in
`lessons/`, the exercises you fill in under `lessons/exercises/`, and the public tests
that grade them under `tests/exercises/`.

## 1. Install (once)

Python 3.10 or newer. In this folder:

```bash
python -m venv .venv && . .venv/bin/activate      # Windows: .venv\\Scripts\\activate
pip install torch                                  # the CPU wheel is enough
pip install -e ".[dev]"                            # the library, pytest, Jupyter kernel
```

Install with `-e` (editable): the tests load your answers from this folder's
`lessons/exercises/`, so they must see this copy, not one in site-packages.

## 2. Run a notebook

```bash
jupyter lab lessons/        # or open the .ipynb files in VS Code with the .venv kernel
```

Notebooks:

{nb_lines}

Run the cells from the top. A cell that calls one of your exercise functions raises
`NotImplementedError` until you write it; that is expected. Set `VIDDIFF_FAST=1` before
starting Jupyter for smaller, faster settings.

## 3. Do the exercises

Each exercise is a function in `lessons/exercises/ex11_N.py` whose body is
`raise NotImplementedError("Exercise ...")`. Replace that line with your code; keep the
function's name and arguments. The docstring says what to compute and the shapes.

| exercise | file | what to do |
|---|---|---|
{ex_lines}

Check one exercise inside its notebook (a table appears under the cell):

```python
from viddiff_mini.grading import check
check("11.1.1a")      # or check("11.1") for the whole section
```

## 4. Run the graded tests

```bash
pytest tests/exercises                     # everything
pytest tests/exercises --exercise 11.1.1a  # one exercise (11.1 = a whole section)
```

At the end pytest prints a grade table, and writes the same results to `grade.json`:

```
exercise  tests passed  points  status / first failure
11.1.1a   4/6           6/9     2 failed: method='flow': ... should ...
11.2.1a   0/3           0/4     not attempted (Exercise 11.2.1a: ...)
total                   6/13
```

* **tests passed / points**: how many public tests of that exercise pass, and the points
  they are worth.
* **status / first failure**: "all public tests passed", "not attempted" (the function
  still raises `NotImplementedError`), or the first failing test's message: it says what
  was expected. Run `pytest tests/exercises -k NAME` to see that test in full.
* Your answers run in a process of their own; the tests get back what your functions
  return (tensors, numbers, ...). Whatever your code prints is shown under a failing test
  as "Captured output of the answer".
* These are the **public** tests only. Your final grade also uses hidden tests of the same
  exercises, so passing every public test does not guarantee full points: test your code
  on your own inputs too.

The other tests in `tests/` check the library itself (`pytest tests -x -q`).

## 5. Hand in

Hand in the folder `lessons/exercises/` (or a zip of it) as your course asks. Only the
files `ex11_*.py` are graded; they run in a sandboxed process of their own (no network, no
files but their own, a time and memory limit), so an endless loop or a crash costs the
exercise it happens in.
"""


def write_handout(out, source=None, *, force: bool = False, check_leaks: bool = True) -> dict:
    """Write the student handout of ``source`` (default: this checkout) into ``out``.

    Returns ``{"out", "excluded", "stripped", "warnings", "notebooks", "cleared_cells",
    "exercises", "text"}``. Raises ``FileExistsError`` for a non-empty ``out`` without ``force`` and
    ``RuntimeError`` if solution code ended up in the handout (``check_leaks``; the
    handout is then removed again).
    """
    source = Path(source) if source is not None else repo_root()
    out = Path(out)
    for need in ("viddiff_mini", "pyproject.toml", "lessons/exercises"):
        if not (source / need).exists():
            raise FileNotFoundError(f"--source: {source} has no {need} "
                                    f"(expected the course repository)")
    _prepare_out(out, source, force)
    report: dict = {"excluded": [], "stripped": [], "warnings": [], "notebooks": [],
                    "cleared_cells": 0}

    shutil.copytree(source / "viddiff_mini", out / "viddiff_mini", ignore=_IGNORE)
    for name in ("pyproject.toml", "environment.yml", "LICENSE"):
        if (source / name).is_file():
            shutil.copy2(source / name, out / name)
    # the recorded results the notebooks show (stored generator samples, card evaluations,
    # sweeps): without them a student's first Run-All redraws samples for minutes
    if (source / "results").is_dir():
        shutil.copytree(source / "results", out / "results", ignore=_IGNORE)

    lessons = source / "lessons"
    for path in sorted(lessons.rglob("*")):
        rel = path.relative_to(lessons)
        if path.is_dir() or any(p in (".ipynb_checkpoints", "__pycache__") for p in rel.parts):
            continue
        target = out / "lessons" / rel
        if path.suffix == ".ipynb":
            report["cleared_cells"] += _clear_notebook(path, target)
            report["notebooks"].append(f"lessons/{rel.as_posix()}")
        elif rel.parts[0] == "exercises" and path.suffix == ".py" and len(rel.parts) == 2:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
        elif rel.parts[0] != "exercises" and path.suffix != ".pyc":
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)

    if (source / "tests").is_dir():
        _copy_tests(source / "tests", out / "tests", report)
    exercises = _exercise_list(source / "lessons" / "exercises")
    (out / "README.md").write_text(student_readme(exercises, report["notebooks"]),
                                   encoding="utf-8")

    if check_leaks and (source / "solutions").is_dir():
        leaks = find_leaks(out, source / "solutions", source / "lessons" / "exercises")
        if leaks:
            for p in out.iterdir():  # never leave a handout with solutions lying around
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
            raise RuntimeError("solution code found in the handout (" + str(out) + " was "
                               "emptied again; change the source and run again):\n  "
                               + "\n  ".join(leaks))
    lines = [f"wrote the student handout to {out}",
             f"  notebooks (lesson outputs kept): {len(report['notebooks'])}, "
             f"exercise cells cleared: {report['cleared_cells']}",
             f"  exercises: {len(exercises)}"]
    lines += [f"  left out: {x}" for x in report["excluded"]]
    lines += [f"  hidden tests cut from {x}" for x in report["stripped"]]
    lines += [f"  warning: {x}" for x in report["warnings"]]
    return {"out": out, **report, "exercises": exercises, "text": "\n".join(lines)}
