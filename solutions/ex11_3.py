"""Reference solutions for lesson 11.3 (control and applications). Same functions as
``lessons/exercises/ex11_3.py``, solved. Instructor only: never in the student handout.
"""

from __future__ import annotations
