"""Run-All on the stubs, lessons 11.2.x: each notebook, executed in a real kernel in the fast
profile with ``VIDDIFF_ANSWERS=stubs`` (a student who has solved nothing yet), raises no error
outside the cells tagged ``exercise-check``. The README's test command runs the same notebooks
with the *solutions* under nbval; together the two runs cover both ends. (One file per part,
so that ``pytest -n 2 --dist loadfile`` spreads them over the workers.)
"""

from pathlib import Path

import pytest

from viddiff_mini.lessons_tools import assert_runs_on_stubs

LESSONS = Path(__file__).resolve().parent.parent / "lessons"
NOTEBOOKS = sorted(p.name for p in LESSONS.glob("11_2_*.ipynb"))


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_run_all_on_stubs(name):
    assert_runs_on_stubs(LESSONS / name)
