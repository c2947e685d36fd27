"""Small helpers for the lesson notebooks (``lessons/*.ipynb``) and their tooling.

* :func:`yours` — a context manager for the exercise cells of a notebook: it runs your code
  and, while an exercise is still a stub (``NotImplementedError``), prints
  ``implement 11.1.1c to see yours here`` instead of stopping Run-All. Any other error in
  your code is shown as usual.
* :func:`execute_notebook` — run every code cell of a notebook in a fresh Jupyter kernel of
  the current Python environment and store the outputs and execution counts in the notebook
  (used by ``scripts/execute_lessons.py`` and by ``tests/test_lessons_run.py``). It needs
  only ``jupyter_client``, ``ipykernel`` and ``nbformat`` (the ``[dev]`` extra).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

EXERCISE_TAG = "exercise-check"


# --------------------------------------------------------------------------- in the notebook
@contextlib.contextmanager
def yours(exercise: str, where: str = "lessons/exercises"):
    """Run the body; if it raises ``NotImplementedError`` (an unsolved stub), print a
    visible note instead of failing, so Run-All goes on to the next cell::

        with yours("11.1.1c"):
            verdict = ex.detect_temporal_failures(video)
            print(verdict)
    """
    try:
        yield
    except NotImplementedError as e:
        msg = str(e).splitlines()[0] if str(e) else "NotImplementedError"
        print(f"[{exercise}] not implemented yet ({msg}).\n"
              f"Implement {exercise} in {where}/ to see yours here; this cell reloads "
              f"your file every time it runs.")


# --------------------------------------------------------------------------- executing notebooks
@dataclass
class CellError:
    index: int          # position of the cell in nb.cells (0-based, markdown included)
    tags: list
    ename: str
    evalue: str

    def __str__(self) -> str:
        return f"cell {self.index} (tags {self.tags}): {self.ename}: {self.evalue[:300]}"


@dataclass
class ExecutionResult:
    seconds: float
    errors: list = field(default_factory=list)         # every cell that raised
    cell_seconds: dict = field(default_factory=dict)    # cell index -> seconds
    cpu_seconds: float | None = None  # the kernel's CPU time incl. its children (check() runs)

    def errors_outside(self, tag: str = EXERCISE_TAG) -> list:
        """Errors in cells that are *not* tagged ``tag``."""
        return [e for e in self.errors if tag not in e.tags]


def _kernel_manager():
    """A KernelManager for a python kernel of *this* interpreter (like nbval's
    ``--nbval-current-env``), whatever kernels are installed elsewhere."""
    import ipykernel.kernelspec
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    class _Here(KernelSpecManager):
        def get_kernel_spec(self, kernel_name):
            return self.kernel_spec_class(resource_dir=ipykernel.kernelspec.RESOURCES,
                                          **ipykernel.kernelspec.get_kernel_dict())

    return KernelManager(kernel_name="python3", kernel_spec_manager=_Here())


def execute_notebook(nb, *, cwd: str | os.PathLike, env: dict | None = None,
                     cell_timeout: float = 600, skip=None, stop_on_error: bool = False,
                     log=None) -> ExecutionResult:
    """Execute the code cells of ``nb`` (an ``nbformat`` v4 notebook, changed in place).

    Each code cell gets fresh ``outputs`` and an ``execution_count``; a cell that raises
    keeps its error output and execution goes on (like ``nbclient``'s ``allow_errors``),
    unless ``stop_on_error``. ``skip(cell) -> bool`` leaves a cell unexecuted (outputs
    cleared, no count). ``env`` is the kernel's whole environment (default: ours).
    """
    from nbformat.v4 import output_from_msg

    km = _kernel_manager()
    km.start_kernel(env=dict(os.environ if env is None else env), cwd=str(cwd),
                    stderr=open(os.devnull, "w"))  # noqa: SIM115 - the kernel owns it
    kc = km.client()
    kc.start_channels()
    result = ExecutionResult(0.0)
    start = time.perf_counter()
    try:
        kc.wait_for_ready(timeout=120)
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            cell.outputs = []
            cell.execution_count = None
            if skip is not None and skip(cell):
                continue
            t0 = time.perf_counter()
            msg_id = kc.execute(cell.source, store_history=True, allow_stdin=False)
            outputs, clear_pending = [], False
            deadline = time.monotonic() + cell_timeout
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    km.interrupt_kernel()
                    raise TimeoutError(f"cell {index} did not finish within {cell_timeout:g}s")
                try:
                    msg = kc.get_iopub_msg(timeout=min(left, 5))
                except Exception:  # queue.Empty
                    continue
                if msg["parent_header"].get("msg_id") != msg_id:
                    continue
                kind, content = msg["msg_type"], msg["content"]
                if kind == "status" and content["execution_state"] == "idle":
                    break
                if kind == "clear_output":
                    if content.get("wait"):
                        clear_pending = True
                    else:
                        outputs = []
                    continue
                if kind in ("stream", "display_data", "execute_result", "error"):
                    if clear_pending:
                        outputs, clear_pending = [], False
                    out = output_from_msg(msg)
                    if kind == "stream" and outputs and outputs[-1].output_type == "stream" \
                            and outputs[-1].name == out.name:
                        outputs[-1].text += out.text
                    else:
                        outputs.append(out)
                    if kind == "error":
                        result.errors.append(CellError(index, list(cell.metadata.get("tags", [])),
                                                       content["ename"], content["evalue"]))
            reply = kc.get_shell_msg(timeout=60)
            while reply["parent_header"].get("msg_id") != msg_id:
                reply = kc.get_shell_msg(timeout=60)
            cell.execution_count = reply["content"].get("execution_count")
            cell.outputs = outputs
            result.cell_seconds[index] = time.perf_counter() - t0
            if log is not None:
                log(f"  cell {index:3d}: {result.cell_seconds[index]:6.1f}s")
            if stop_on_error and result.errors and result.errors[-1].index == index:
                break
        result.cpu_seconds = _kernel_cpu_seconds(kc)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    result.seconds = time.perf_counter() - start
    return result


_CPU_PROBE = ("import resource as _r\n_u, _c = _r.getrusage(_r.RUSAGE_SELF), "
              "_r.getrusage(_r.RUSAGE_CHILDREN)\n"
              "print(_u.ru_utime + _u.ru_stime + _c.ru_utime + _c.ru_stime)\ndel _r, _u, _c")


def _kernel_cpu_seconds(kc, timeout: float = 60) -> float | None:
    """CPU seconds (user + system) the kernel and its finished children used so far: unlike
    wall time, this hardly depends on what else runs on the machine. None where the
    ``resource`` module is missing (Windows)."""
    msg_id = kc.execute(_CPU_PROBE, store_history=False, allow_stdin=False, silent=False)
    text, deadline = "", time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            msg = kc.get_iopub_msg(timeout=5)
        except Exception:  # queue.Empty
            continue
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "stream":
            text += msg["content"]["text"]
        elif msg["msg_type"] == "error":
            return None
        elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
    try:
        return float(text.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None


def lesson_env(answers: str, fast: bool = True, threads: int | None = 1) -> dict:
    """The kernel environment for a lesson run: ``VIDDIFF_ANSWERS=answers``, the fast or
    full profile, and ``threads`` torch/OpenMP threads (None: leave as is)."""
    env = dict(os.environ, VIDDIFF_ANSWERS=answers)
    if fast:
        env["VIDDIFF_FAST"] = "1"
    else:
        env.pop("VIDDIFF_FAST", None)
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    # the package importable from the kernel even in a checkout that was not pip-installed
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


def is_check_only(cell) -> bool:
    """True for a code cell that only runs ``check(...)`` calls (and imports ``check``):
    it prints a grade table and leaves no state behind that later cells use."""
    import ast

    try:
        tree = ast.parse(cell.source)
    except SyntaxError:
        return False
    calls = 0
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module == "viddiff_mini.grading" \
                and [a.name for a in node.names] == ["check"]:
            continue
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call) \
                and isinstance(node.value.func, ast.Name) and node.value.func.id == "check":
            calls += 1
            continue
        return False
    return calls > 0


def run_lesson_on_stubs(path: str | os.PathLike, fast: bool = True) -> ExecutionResult:
    """Run a lesson notebook as a student who has solved nothing yet would (Run-All,
    ``VIDDIFF_ANSWERS=stubs``) and return what happened; the notebook file is not changed.

    Skipped, to save time: cells nbval skips (tag ``nbval-skip``) and cells that only call
    ``check(...)`` — both are exercise checks, which may fail on the stubs by design and
    which leave nothing behind that a later cell uses.
    """
    import nbformat

    path = Path(path)
    nb = nbformat.read(str(path), as_version=4)

    def skip(cell):
        tags = cell.metadata.get("tags", [])
        return "nbval-skip" in tags or (EXERCISE_TAG in tags and is_check_only(cell))

    return execute_notebook(nb, cwd=path.parent, env=lesson_env("stubs", fast=fast), skip=skip)


def assert_runs_on_stubs(path: str | os.PathLike) -> None:
    """Fail (AssertionError naming the cells) when Run-All on the stubs raises outside the
    cells tagged ``exercise-check``; the tests of every lesson part call this."""
    result = run_lesson_on_stubs(path)
    bad = result.errors_outside()
    assert not bad, (f"{Path(path).name} on the stubs ({result.seconds:.0f}s): errors outside "
                     "exercise cells:\n" + "\n".join(map(str, bad)))


def is_executed(nb) -> bool:
    """True when every code cell holds an execution count (the notebook was run)."""
    return all(c.get("execution_count") is not None for c in nb.cells if c.cell_type == "code")


if __name__ == "__main__":  # pragma: no cover - a quick manual run
    import nbformat

    for p in sys.argv[1:]:
        nb = nbformat.read(p, as_version=4)
        r = execute_notebook(nb, cwd=Path(p).parent, env=lesson_env("stubs"))
        print(p, f"{r.seconds:.1f}s", *map(str, r.errors), sep="\n  ")
