"""viddiff_mini.lessons_tools: the notebook fallback and the notebook runner (no kernel)."""

import nbformat
import pytest

from viddiff_mini.lessons_tools import (
    EXERCISE_TAG,
    CellError,
    ExecutionResult,
    is_check_only,
    is_executed,
    yours,
)


def test_yours_turns_a_stub_into_a_visible_note(capsys):
    with yours("11.1.1a"):
        raise NotImplementedError("Exercise 11.1.1a: interpolate frames")
    out = capsys.readouterr().out
    assert "11.1.1a" in out and "to see yours here" in out


def test_yours_lets_real_bugs_through():
    with pytest.raises(ZeroDivisionError):
        with yours("11.1.1a"):
            _ = 1 / 0


def test_is_check_only():
    cell = nbformat.v4.new_code_cell
    assert is_check_only(cell('from viddiff_mini.grading import check\ncheck("11.1.1a")'))
    assert is_check_only(cell('check("11.3.1");    # part 1'))
    assert not is_check_only(cell('r = check("11.1.1a")'))
    assert not is_check_only(cell('check("11.1.1a")\nx = 1'))
    assert not is_check_only(cell("import os"))


def test_is_executed_and_errors_outside():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("x"),
                                         nbformat.v4.new_code_cell("1")])
    assert not is_executed(nb)
    nb.cells[1].execution_count = 1
    assert is_executed(nb)
    r = ExecutionResult(1.0, [CellError(3, [EXERCISE_TAG], "E", ""), CellError(4, [], "E", "")])
    assert [e.index for e in r.errors_outside()] == [4]
