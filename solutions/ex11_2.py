"""Reference solutions for lesson 11.2 (architectures). Same functions as
``lessons/exercises/ex11_2.py``, solved. Instructor only: never in the student handout.
"""

from __future__ import annotations
