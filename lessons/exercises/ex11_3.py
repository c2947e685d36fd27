"""Exercises for lesson 11.3 (control and applications). Fill in each function.

Each function raises ``NotImplementedError("Exercise 11.3.<k><letter>: ...")`` until you
write it. Check your work in a notebook with ``check("11.3.<k><letter>")`` from
``viddiff_mini.grading``. Video tensors are ``(b, c, t, h, w)``, float, in [-1, 1].
"""

from __future__ import annotations
