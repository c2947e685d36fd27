"""Find and load a set of exercise answers (the student's stubs, the solutions, a submission).

An *answers folder* holds ``ex11_1.py``, ``ex11_2.py``, ``ex11_3.py``. Which folder is used:

1. an explicit argument (``pytest --answers=...``, ``check(..., answers=...)``),
2. else the environment variable ``VIDDIFF_ANSWERS``,
3. else the student's stubs in ``lessons/exercises``.

The names ``stubs`` (alias ``student``) and ``solutions`` mean the folders of this
repository; anything else is a path to a folder.

Each answer file is loaded *from its path* with importlib, under a module name that is
unique per folder (``viddiff_answers_<hash>_ex11_1``), so the stubs and the solutions never
collide in ``sys.modules`` and a test always sees the folder it asked for.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import sys
from pathlib import Path
from types import ModuleType

ENV_VAR = "VIDDIFF_ANSWERS"
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class AnswerFileMissing(FileNotFoundError):
    """The chosen answers folder has no file for the requested module."""


def repo_root() -> Path:
    """The folder holding ``viddiff_mini/``, ``lessons/``, ``solutions/`` and ``tests/``."""
    return Path(__file__).resolve().parent.parent.parent


def stubs_dir() -> Path:
    return repo_root() / "lessons" / "exercises"


def solutions_dir() -> Path:
    return repo_root() / "solutions"


def exercise_tests_dir() -> Path:
    """The graded tests of this checkout: ``viddiff_mini/../tests/exercises``."""
    return repo_root() / "tests" / "exercises"


def resolve_answers_dir(spec: str | os.PathLike | None = None) -> Path:
    """Turn ``spec`` (or ``$VIDDIFF_ANSWERS``, or the default) into an absolute folder path."""
    if spec is None or str(spec).strip() == "":
        spec = os.environ.get(ENV_VAR, "").strip() or "stubs"
    text = str(spec)
    aliases = {"stubs": stubs_dir(), "student": stubs_dir(), "solutions": solutions_dir()}
    if text in aliases:
        if not aliases[text].is_dir():
            raise ValueError(
                f"answers: {text!r} means {aliases[text]}, which does not exist here"
                + (" (a student handout has no solutions)" if text == "solutions" else ""))
        return aliases[text]
    path = Path(text).expanduser()
    if not path.is_absolute() and not path.exists() and (repo_root() / path).exists():
        path = repo_root() / path  # "lessons/exercises" works from any working directory
    if not path.is_dir():
        raise ValueError(
            f"answers: {text!r} is not a folder; expected 'stubs', 'solutions' or a folder "
            f"holding ex11_*.py (set by --answers or ${ENV_VAR})")
    return path.resolve()


def _module_name(folder: Path, name: str) -> str:
    digest = hashlib.sha1(str(folder).encode()).hexdigest()[:10]
    return f"viddiff_answers_{digest}_{name}"


def load_answers(name: str, answers: str | os.PathLike | None = None) -> ModuleType:
    """Load ``<answers folder>/<name>.py`` fresh and return the module.

    ``name`` is a module name such as ``"ex11_1"``. ``answers`` picks the folder (see the
    module docstring); by default ``$VIDDIFF_ANSWERS`` or the stubs in ``lessons/exercises``.
    The file is executed again on every call, so edits made in an editor are picked up.
    """
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(f"name: expected a module name such as 'ex11_1', got {name!r}")
    folder = resolve_answers_dir(answers)
    path = folder / f"{name}.py"
    if not path.is_file():
        raise AnswerFileMissing(
            f"answers folder {folder} has no {name}.py (expected the file "
            f"lessons/exercises/{name}.py of the handout)")
    mod_name = _module_name(folder, name)
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:  # pragma: no cover - only for odd file systems
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    # Registered while it runs so dataclasses / pickling inside the file can find it.
    sys.modules[mod_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(mod_name, None)
        raise
    return module
