"""``viddiff assign``: the student handout holds no solution code and no hidden tests."""

from __future__ import annotations

import ast
import json
import textwrap
from pathlib import Path

import nbformat
import pytest

from viddiff_mini import cli
from viddiff_mini.grading.answers import repo_root, solutions_dir, stubs_dir
from viddiff_mini.grading.assign import classify_test_file, strip_hidden, write_handout

pytestmark = pytest.mark.instructor  # reads solutions/: not in the handout


# --------------------------------------------------------------------------- an independent check
def _norm(stmts) -> str:
    """Statements, normalised by ast (layout/comments/quotes gone), one stripped line each."""
    text = "\n".join(ast.unparse(s) for s in stmts)
    return "\n".join(line.strip() for line in text.splitlines() if line.strip())


def _bodies(path: Path) -> dict[str, str]:
    out = {}
    if path.is_file():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                body = node.body[1:] if ast.get_docstring(node) else node.body
                if body:
                    out[node.name] = _norm(body)
    return out


def _solution_bodies() -> dict[str, str]:
    """Every solution function body, except private helpers given to the student (the
    same ``_name`` body in the stub)."""
    out = {}
    for path in sorted(solutions_dir().glob("*.py")):
        given = set(_bodies(stubs_dir() / path.name).values())
        for name, body in _bodies(path).items():
            if not (name.startswith("_") and body in given):
                out[f"{path.name}:{name}"] = body
    return out


def _handout_texts(root: Path) -> dict[str, str]:
    """Every handout file as normalised Python where it parses, else as stripped text."""
    out = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if path.suffix == ".ipynb":
            nb = nbformat.read(str(path), as_version=4)
            text = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
            text = "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("%"))
        else:
            try:
                text = path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                continue
        try:
            out[str(path)] = _norm(ast.parse(text).body)
        except SyntaxError:
            out[str(path)] = "\n".join(ln.strip() for ln in text.splitlines() if ln.strip())
    return out


@pytest.fixture(scope="module")
def handout(tmp_path_factory):
    out = tmp_path_factory.mktemp("handout")
    # the leak check of assign itself is off here: the test below checks independently
    summary = write_handout(out, check_leaks=False)
    return out, summary


def test_handout_has_no_solution_code(handout):
    out, _ = handout
    assert not [p for p in out.rglob("*") if p.name == "solutions"]
    bodies = _solution_bodies()
    assert bodies, "no solution functions found"
    texts = _handout_texts(out)
    # Very short bodies ("return x") are not evidence of a leak: require 40 characters.
    leaks = [f"{key} in {path}" for key, body in bodies.items() if len(body) >= 40
             for path, text in texts.items() if body in text]
    assert not leaks, "solution code in the handout:\n" + "\n".join(leaks)


def test_handout_layout_and_public_tests_only(handout):
    out, summary = handout
    for need in ("README.md", "pyproject.toml", "viddiff_mini/grading/plugin.py",
                 "lessons/exercises/ex11_1.py", "tests/exercises/test_ex11_1.py"):
        assert (out / need).is_file(), need
    assert not (out / "tests" / "exercises" / "test_meta.py").exists()
    # the notebooks' stored samples and card evaluations travel with the handout
    for path in (repo_root() / "results" / "pretrained").glob("*"):
        assert (out / "results" / "pretrained" / path.name).is_file(), path.name
    assert not list(out.rglob("__pycache__")) and not list(out.rglob("*hidden*"))
    for path in (out / "tests").rglob("test_*.py"):
        assert classify_test_file(path) == "public", path
        assert strip_hidden(path.read_text())[1] == [], path  # no hidden test left
    readme = (out / "README.md").read_text()
    for words in ("pip install -e", "pytest tests/exercises", "grade table",
                  "all public tests passed", "not attempted", "hidden tests", "11.1.1a"):
        assert words in readme, words
    assert "all tests passed" not in readme
    src_notebooks = sorted(p.name for p in (repo_root() / "lessons").glob("*.ipynb"))
    assert sorted(p.name for p in (out / "lessons").glob("*.ipynb")) == src_notebooks


def _fake_course(root: Path) -> Path:
    """A minimal course repository with every kind of test file and a run notebook."""
    (root / "viddiff_mini").mkdir(parents=True)
    (root / "viddiff_mini" / "__init__.py").write_text("")
    (root / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    (root / "lessons" / "exercises").mkdir(parents=True)
    (root / "lessons" / "exercises" / "ex11_9.py").write_text(
        'def scale(x, k):\n    """x times k."""\n'
        '    raise NotImplementedError("Exercise 11.9.1a: multiply x by k")\n')
    (root / "solutions").mkdir()
    (root / "solutions" / "ex11_9.py").write_text(
        'def scale(x, k):\n    """x times k."""\n'
        '    # the secret: repeated addition, on purpose\n'
        '    total = 0\n    for _ in range(k):\n        total = total + x\n    return total\n')
    # an executed notebook: a lesson cell with text and a figure, an exercise cell run
    # with the solutions (its output shows the answer) and its graded check
    nb = nbformat.v4.new_notebook()
    lesson = nbformat.v4.new_code_cell("print(1 + 1)\nshow_figure()", execution_count=3, outputs=[
        nbformat.v4.new_output("stream", text="2\n"),
        nbformat.v4.new_output("display_data", data={"image/png": "iVBORw0KGgo=",
                                                     "text/plain": "<Figure 1>"})])
    answer = nbformat.v4.new_code_cell(
        "with yours('11.9.1a'):\n    print(ex.scale(2, 3))", execution_count=4,
        outputs=[nbformat.v4.new_output("stream", text="ANSWER 6\n")],
        metadata={"tags": ["exercise-check"]})
    check = nbformat.v4.new_code_cell(
        "check('11.9.1a')", execution_count=5,
        outputs=[nbformat.v4.new_output("execute_result", data={"text/plain": "ANSWER 3/3"},
                                        execution_count=5)],
        metadata={"tags": ["exercise-check"], "ExecuteTime": {"end": "x"}})
    nb.cells = [nbformat.v4.new_markdown_cell("# 11.9"), lesson,
                nbformat.v4.new_markdown_cell("## Exercise 11.9.1a"), answer, check]
    nbformat.write(nb, str(root / "lessons" / "11_9.ipynb"))
    ex = root / "tests" / "exercises"
    ex.mkdir(parents=True)
    (ex / "test_ex11_9.py").write_text(textwrap.dedent('''
        import pytest


        @pytest.mark.points(1)
        @pytest.mark.exercise("11.9.1a")
        def test_public(answers):
            assert answers("ex11_9").scale(2, 3) == 6


        @pytest.mark.points(1)
        @pytest.mark.exercise("11.9.1a")
        @pytest.mark.hidden
        def test_secret_case(answers):
            assert answers("ex11_9").scale(7, 0) == 0  # SECRET


        class TestMore:
            @pytest.mark.points(1)
            @pytest.mark.exercise("11.9.1a")
            def test_visible(self, answers):
                assert answers("ex11_9").scale(0, 5) == 0

            @pytest.mark.hidden
            @pytest.mark.points(1)
            @pytest.mark.exercise("11.9.1a")
            def test_hidden_method(self, answers):
                assert answers("ex11_9").scale(-1, 2) == -2  # SECRET
        '''))
    (ex / "test_ex11_9_hidden.py").write_text("def test_x():\n    pass  # SECRET\n")
    (ex / "test_all_hidden.py").write_text(
        "import pytest\n\npytestmark = [pytest.mark.hidden]\n\n\n"
        "def test_y():\n    pass  # SECRET\n")
    (ex / "test_tools.py").write_text(
        "import pytest\n\npytestmark = pytest.mark.instructor\n\n\n"
        "def test_z():\n    pass  # SECRET\n")
    (root / "tests" / "conftest.py").write_text("# shared fixtures\n")
    return root


def test_hidden_tests_cut_lesson_outputs_kept_exercise_outputs_cleared(tmp_path):
    src = _fake_course(tmp_path / "course")
    out = tmp_path / "out"
    summary = write_handout(out, source=src)
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert "tests/exercises/test_ex11_9.py" in files and "tests/conftest.py" in files
    assert not any("hidden" in f or "tools" in f or "solutions" in f for f in files), files
    public = (out / "tests" / "exercises" / "test_ex11_9.py").read_text()
    assert "test_public" in public and "test_visible" in public
    assert "SECRET" not in public and "test_secret_case" not in public
    ast.parse(public)
    assert any("test_secret_case" in s for s in summary["stripped"])
    assert not any("SECRET" in (out / f).read_text() for f in files if not f.endswith(".ipynb"))
    nb = json.loads((out / "lessons" / "11_9.ipynb").read_text())
    lesson, answer, check = [c for c in nb["cells"] if c["cell_type"] == "code"]
    # the lesson cell keeps what the executed notebook showed: text and the figure
    assert lesson["execution_count"] == 3
    assert [o["output_type"] for o in lesson["outputs"]] == ["stream", "display_data"]
    assert "".join(lesson["outputs"][0]["text"]) == "2\n"
    assert lesson["outputs"][1]["data"]["image/png"] == "iVBORw0KGgo="
    # the cells that run the answer are cleared, their source and tags kept
    for cell in (answer, check):
        assert cell["outputs"] == [] and cell["execution_count"] is None, cell["source"]
        assert cell["metadata"]["tags"] == ["exercise-check"]
        assert "ExecuteTime" not in cell["metadata"]
    assert "ex.scale(2, 3)" in "".join(answer["source"])
    assert "ANSWER" not in (out / "lessons" / "11_9.ipynb").read_text()
    assert summary["cleared_cells"] == 2 and "exercise cells cleared: 2" in summary["text"]
    assert "11.9.1a" in (out / "README.md").read_text()


def test_refuses_non_empty_out_and_catches_leaks(tmp_path, capsys):
    src = _fake_course(tmp_path / "course")
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("x")
    assert cli.main(["assign", str(out), "--source", str(src)]) == 1
    assert "not empty; use --force" in capsys.readouterr().err
    assert cli.main(["assign", str(out), "--source", str(src), "--force"]) == 0
    assert not (out / "old.txt").exists() and (out / "README.md").exists()
    assert cli.main(["assign", str(src), "--source", str(src), "--force"]) == 1
    assert "course repository itself" in capsys.readouterr().err

    # a lesson cell that printed a solution (inspect.getsource) leaks through its output
    nb_path = src / "lessons" / "11_9.ipynb"
    nb = nbformat.read(str(nb_path), as_version=4)
    leaked = nbformat.read(str(nb_path), as_version=4)
    leaked.cells[1].outputs.append(nbformat.v4.new_output(
        "stream", text=(src / "solutions" / "ex11_9.py").read_text()))
    nbformat.write(leaked, str(nb_path))
    with pytest.raises(RuntimeError, match="11_9.ipynb: ex11_9.py:scale"):
        write_handout(tmp_path / "out_nb", source=src)
    assert not list((tmp_path / "out_nb").iterdir()), "a leaking handout is emptied again"
    nbformat.write(nb, str(nb_path))

    # a stub that was accidentally solved (reformatted, comments changed) is caught
    (src / "lessons" / "exercises" / "ex11_9.py").write_text(
        "def scale(x, k):\n    total=0\n    for _ in range( k ):\n"
        "        total = total + x   # add\n    return total\n")
    with pytest.raises(RuntimeError, match="ex11_9.py:scale"):
        write_handout(tmp_path / "out2", source=src)


def test_strip_hidden_keeps_everything_else():
    src = "import pytest\n\n# keep me\ndef test_a():\n    pass\n\n\n" \
          "@pytest.mark.hidden\ndef test_b():\n    pass\n\n\ndef test_c():\n    pass\n"
    text, removed = strip_hidden(src)
    assert removed == ["test_b"]
    assert "# keep me" in text and "test_a" in text and "test_c" in text and "test_b" not in text
