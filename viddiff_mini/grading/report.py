"""Grade reports: per-test results -> per-exercise summary -> text / HTML table, JSON.

One *test record* (a dict) per graded test::

    {"nodeid": "...", "exercise": "11.1.1a", "points": 2.0, "hidden": False,
     "outcome": "passed" | "failed" | "not attempted" | "timeout" | "missing" |
                "violation" | "output limit" | "skipped" | "pending" | "zeroed",
     "message": "one line, what was expected"}

A hidden test's message is always ``"hidden test failed"``: hidden tests never reveal
their content in feedback. Wording is honest: a run of public tests only says
"all public tests passed", never "all tests passed".
"""

from __future__ import annotations

import html
import json
import os
import re
from pathlib import Path

HIDDEN_MESSAGE = "hidden test failed"
NOT_ATTEMPTED = "not attempted"


def exercise_sort_key(ex: str):
    """Natural order: 11.1.2a < 11.1.10a; letters after numbers."""
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.findall(r"\d+|[A-Za-z]+", ex)]


def one_line(text: str, limit: int = 160) -> str:
    """First non-empty line of ``text``, shortened to ``limit`` characters."""
    for line in str(text).splitlines():
        line = line.strip()
        if line:
            return line if len(line) <= limit else line[: limit - 3] + "..."
    return ""


def _fmt(x: float) -> str:
    return f"{x:g}"


def summarize(tests: list[dict], zeroed: dict[str, str] | None = None) -> dict:
    """Per-exercise summary. ``zeroed`` maps exercise -> reason (scored zero by the grader)."""
    zeroed = zeroed or {}
    exercises: dict[str, dict] = {}
    for t in tests:
        e = exercises.setdefault(t["exercise"], {
            "exercise": t["exercise"], "tests": 0, "passed": 0, "earned": 0.0, "possible": 0.0,
            "hidden": 0, "not_attempted": 0, "message": "", "status": ""})
        e["tests"] += 1
        e["possible"] += float(t["points"])
        e["hidden"] += bool(t.get("hidden"))
        if t["outcome"] == "passed":
            e["passed"] += 1
            e["earned"] += float(t["points"])
        elif t["outcome"] == NOT_ATTEMPTED:
            e["not_attempted"] += 1
        if t["outcome"] not in ("passed", "pending") and not e["message"]:
            e["message"] = HIDDEN_MESSAGE if t.get("hidden") else one_line(t.get("message", ""))
    for ex, e in exercises.items():
        if ex in zeroed:
            e["earned"], e["passed"] = 0.0, 0
            e["status"], e["message"] = "zero", zeroed[ex]
        elif e["passed"] == e["tests"]:
            e["status"] = "all public and hidden tests passed" if e["hidden"] else \
                "all public tests passed"
        elif e["not_attempted"] == e["tests"]:
            e["status"] = NOT_ATTEMPTED
        elif any(t["outcome"] == "pending" for t in tests if t["exercise"] == ex):
            e["status"] = "not run"
        else:
            mine = [t["outcome"] for t in tests if t["exercise"] == ex]
            not_run = sum(o == "skipped" for o in mine)
            failed = e["tests"] - e["passed"] - not_run
            e["status"] = ", ".join(x for x in (f"{failed} failed" if failed else "",
                                                f"{not_run} not run" if not_run else "") if x)
    ordered = sorted(exercises.values(), key=lambda e: exercise_sort_key(e["exercise"]))
    total_e = sum(e["earned"] for e in ordered)
    total_p = sum(e["possible"] for e in ordered)
    return {"exercises": ordered, "earned": total_e, "possible": total_p,
            "hidden_included": any(e["hidden"] for e in ordered)}


def format_table(summary: dict) -> str:
    """A plain-text grade table (one row per exercise) with an honest footer."""
    rows = [("exercise", "tests passed", "points", "status / first failure")]
    for e in summary["exercises"]:
        note = e["status"]
        if e["message"] and e["status"] not in (NOT_ATTEMPTED,):
            note = f"{note}: {e['message']}"
        elif e["status"] == NOT_ATTEMPTED and e["message"]:
            note = f"{NOT_ATTEMPTED} ({e['message'].removeprefix('not attempted: ')})"
        rows.append((e["exercise"], f"{e['passed']}/{e['tests']}",
                     f"{_fmt(e['earned'])}/{_fmt(e['possible'])}", one_line(note, 110)))
    rows.append(("total", "", f"{_fmt(summary['earned'])}/{_fmt(summary['possible'])}", ""))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = []
    for i, r in enumerate(rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(r[:3], widths)) + "  " + r[3])
        if i == 0 or i == len(rows) - 2:
            lines.append("-" * min(120, sum(widths) + 6 + 30))
    lines.append(footer(summary))
    return "\n".join(line.rstrip() for line in lines)


def footer(summary: dict) -> str:
    if summary["hidden_included"]:
        return "These results include hidden tests; their messages are not shown."
    return ("Public tests only: the final grade may also use hidden tests, "
            "so passing every public test does not guarantee full points.")


def html_table(summary: dict) -> str:
    """The same table as HTML, for Jupyter."""
    colour = {"all public tests passed": "#d4edda", "all public and hidden tests passed": "#d4edda",
              NOT_ATTEMPTED: "#eeeeee"}
    out = ["<table><thead><tr><th>exercise</th><th>tests passed</th><th>points</th>"
           "<th style='text-align:left'>status / first failure</th></tr></thead><tbody>"]
    for e in summary["exercises"]:
        bg = colour.get(e["status"], "#f8d7da")
        note = e["status"] + (f": {e['message']}" if e["message"] and e["status"] != NOT_ATTEMPTED
                              else "")
        out.append(
            f"<tr style='background:{bg}'><td>{html.escape(e['exercise'])}</td>"
            f"<td>{e['passed']}/{e['tests']}</td><td>{_fmt(e['earned'])}/{_fmt(e['possible'])}</td>"
            f"<td style='text-align:left'>{html.escape(note)}</td></tr>")
    out.append(f"<tr><td><b>total</b></td><td></td><td><b>{_fmt(summary['earned'])}/"
               f"{_fmt(summary['possible'])}</b></td><td></td></tr></tbody></table>")
    out.append(f"<p><i>{html.escape(footer(summary))}</i></p>")
    return "".join(out)


def write_json(path: str | os.PathLike, data: dict) -> None:
    """Write JSON atomically (temp file + rename; no fsync: we only guard against our own
    process dying half-way, and this runs after every test)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)
