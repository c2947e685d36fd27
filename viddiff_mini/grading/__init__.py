"""Exercises and grading: load answers, check an exercise inline, assign, grade.

In a notebook::

    from viddiff_mini.grading import check, load_answers
    ex = load_answers("ex11_1")        # your lessons/exercises/ex11_1.py, loaded fresh
    check("11.1.1a")                   # runs that exercise's graded tests, shows a table

``$VIDDIFF_ANSWERS`` (``stubs`` | ``solutions`` | a folder) picks the answers for both.
The pytest plugin is ``viddiff_mini.grading.plugin``; the instructor commands are
``viddiff assign`` (:mod:`.assign`) and ``viddiff grade`` (:mod:`.grade`).
"""

from .answers import load_answers, resolve_answers_dir
from .check import CheckResult, check

__all__ = ["check", "load_answers", "resolve_answers_dir", "CheckResult"]
