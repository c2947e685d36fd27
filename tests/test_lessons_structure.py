"""Static checks of the lesson notebooks (no kernel, fast).

* The lesson part never needs a student answer: only cells tagged ``exercise-check``
  (the exercise section) use the student's module ``ex``, and each such cell re-reads it
  first (``ex = load_answers(...)``), so edits show without a kernel restart.
* Every ``check(...)`` cell is tagged ``exercise-check`` and sits in the exercise section.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from viddiff_mini.lessons_tools import EXERCISE_TAG

LESSONS = Path(__file__).resolve().parent.parent / "lessons"
NOTEBOOKS = sorted(LESSONS.glob("*.ipynb"))
USES_EX = re.compile(r"(?<![\w.])ex\.\w")


def _read(path):
    return nbformat.read(str(path), as_version=4)


def test_there_are_lessons():
    assert len(NOTEBOOKS) >= 13


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_valid(path):
    nbformat.validate(_read(path))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_student_module_only_in_exercise_cells(path):
    nb = _read(path)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        tags = cell.metadata.get("tags", [])
        if USES_EX.search(cell.source) or re.search(r"^ex\s*=", cell.source, re.M):
            assert EXERCISE_TAG in tags, (
                f"{path.name} cell {i}: uses the student's module `ex` outside the exercise "
                f"section (tag it {EXERCISE_TAG!r} and move it there, or use the library)")
        if USES_EX.search(cell.source):
            assert cell.source.lstrip().startswith("ex = load_answers("), (
                f"{path.name} cell {i}: an exercise cell must re-read the student's file first "
                f"(`ex = load_answers(...)`)")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_check_cells_are_exercise_cells_after_the_heading(path):
    nb = _read(path)
    heading = next((i for i, c in enumerate(nb.cells) if c.cell_type == "markdown"
                    and re.search(r"^## Exercises", c.source, re.M)), None)
    assert heading is not None, f"{path.name}: no '## Exercises' section"
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        tags = cell.metadata.get("tags", [])
        if re.search(r"^check\(", cell.source, re.M):
            assert EXERCISE_TAG in tags, f"{path.name} cell {i}: check() cell not tagged"
        if EXERCISE_TAG in tags:
            assert i > heading, f"{path.name} cell {i}: exercise cell before '## Exercises'"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_closure_and_scaffolding(path):
    nb = _read(path)
    last = nb.cells[-1]
    assert last.cell_type == "markdown" and "## Summary" in last.source and "小结" in last.source, \
        f"{path.name}: must end with a summary in English and Chinese"
    questions = re.findall(r"^\d\. ", last.source.split("### Check your understanding")[-1]
                           .split("### Where next")[0], re.M)
    assert 3 <= len(questions) <= 5, f"{path.name}: 3-5 check-your-understanding questions"
    assert "### Where next" in last.source
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "Predict first" in text, f"{path.name}: no 'predict first' prompt"
    # every exercise named in the notebook gets a difficulty, a time and two folded hints
    units = [u for c in nb.cells if c.cell_type == "markdown" for u in c.source.split("\n---\n")
             if "**Difficulty**" in u and u.count("<details>") >= 2]
    for exid in sorted(set(re.findall(r"\*\*(11\.\d\.\d[a-c])\*\*", text))):
        assert any(exid in u for u in units), \
            f"{path.name}: exercise {exid} lacks a difficulty/time and two folded hints"
