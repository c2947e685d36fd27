"""``viddiff data`` export / inspect / filter / cache, run in-process through the real CLI."""

from __future__ import annotations

import json

import pytest

from viddiff_mini.cli import main


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "ms"
    rc = main(["data", "export", str(out), "--classes", "2", "--groups", "1,8-9",
               "--frames", "8", "--size", "24", "--quiet"])
    assert rc == 0
    return out


def test_export_writes_the_ucf101_layout(exported, capsys):
    lists = exported / "ucfTrainTestlist"
    assert (lists / "classInd.txt").read_text().splitlines() == ["1 ApproachCircle",
                                                                 "2 ApproachRing"]
    for fold in (1, 2, 3):
        assert (lists / f"trainlist0{fold}.txt").is_file()
        assert (lists / f"testlist0{fold}.txt").is_file()
    videos = sorted(exported.glob("UCF-101/*/*.avi"))
    groups = {p.name.split("_")[2] for p in videos}
    assert groups == {"g01", "g08", "g09"} and len(videos) >= 2 * 3 * 4
    rc = main(["data", "export", str(exported), "--classes", "2", "--groups", "1,8-9",
               "--frames", "8", "--size", "24", "--quiet"])
    assert rc == 0 and "(0 written)" in capsys.readouterr().out


def test_inspect_real_data_prints_counts_and_writes_pictures(exported, tmp_path, capsys):
    rc = main(["data", "inspect", "--data", f"ucf101:{exported}", "--out", str(tmp_path),
               "--frames", "4", "--size", "16", "--clips", "2"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "train" in out and "test" in out and "ApproachRing" in out and "g08" in out
    assert (tmp_path / "contact_sheet.png").stat().st_size > 1000
    assert sorted(p.name for p in (tmp_path / "gifs").iterdir()) == ["ApproachCircle.gif",
                                                                    "ApproachRing.gif"]
    counts = json.loads((tmp_path / "counts.json").read_text())
    assert counts["totals"]["train"] + counts["totals"]["test"] == \
        len(list(exported.glob("UCF-101/*/*.avi")))


def test_inspect_shapes_with_a_class_limit(tmp_path, capsys):
    rc = main(["data", "inspect", "--out", str(tmp_path), "--classes", "BounceCircle,Orbit"
               "Square", "--frames", "4", "--size", "16", "--clips", "2", "--fold", "2"])
    out = capsys.readouterr().out
    assert rc == 0 and "13320" not in out and "101 classes" in out and "ZoomOutSquare" in out
    assert sorted(p.name for p in (tmp_path / "gifs").iterdir()) == ["BounceCircle.gif",
                                                                    "OrbitSquare.gif"]
    assert (tmp_path / "contact_sheet.png").is_file()
    assert main(["data", "inspect"]) == 0                      # counts only, no pictures
    assert "pass --out DIR" in capsys.readouterr().out


def test_filter_and_cache(exported, tmp_path, capsys):
    report = tmp_path / "report.json"
    assert main(["data", "filter", str(exported), "--report", str(report), "--min-frames", "8",
                 "--quiet"]) == 0
    r = json.loads(report.read_text())
    assert r["total"] == len(list(exported.glob("UCF-101/*/*.avi")))
    assert r["kept"] + r["dropped"] == r["total"]
    capsys.readouterr()
    cache = tmp_path / "cache"
    assert main(["data", "cache", str(exported), "--out", str(cache), "--frames", "4",
                 "--size", "16", "--bench", "--bench-n", "4", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "cached" in out and "clips/s" in out
    index = json.loads((cache / "index.json").read_text())
    assert index["shape"][1:] == [4, 16, 16, 3]
    train = (exported / "ucfTrainTestlist" / "trainlist01.txt").read_text().splitlines()
    assert index["count"] == len(train)


def test_user_errors_are_one_line_messages(tmp_path, capsys):
    assert main(["data", "export", str(tmp_path / "x"), "--groups", "a-b", "--quiet"]) == 1
    assert "viddiff data: --groups 'a-b'" in capsys.readouterr().err
    assert main(["data", "export", str(tmp_path / "x"), "--classes", "Nope", "--quiet"]) == 1
    assert "unknown class 'Nope'" in capsys.readouterr().err
    assert main(["data", "inspect", "--data", f"folder:{tmp_path / 'none'}"]) == 1
    assert "no such folder" in capsys.readouterr().err
    assert main(["data", "cache", str(tmp_path), "--out", str(tmp_path / "c")]) == 1
    assert "no videos found" in capsys.readouterr().err
