"""build.json paths are relative to the build directory (issue 17): `callmark publish --build DIR`
works from any working directory, and older build.json files (cwd-relative) still load."""
import json

from trainer.pipeline import BuildResult


def _build(root):
    b = root / "builds" / "v3"
    for d in ("packs", "deltas/from-v2", "model", "report"):
        (b / d).mkdir(parents=True)
    (b / "labels.csv").write_text("number,category,confidence,reporters,published\n")
    return b


def test_build_json_is_relative_and_loads_from_anywhere(tmp_path, monkeypatch):
    b = _build(tmp_path)
    monkeypatch.chdir(tmp_path)
    rel = b.relative_to(tmp_path)
    res = BuildResult(3, str(rel), str(rel / "labels.csv"), str(rel / "packs"), [str(rel / "deltas/from-v2")],
                      str(rel / "model"), str(rel / "report"), {"labels": 0})
    res.write(rel)
    d = json.loads((b / "build.json").read_text())
    assert (d["pack_dir"], d["delta_dirs"], d["model_dir"]) == ("packs", ["deltas/from-v2"], "model")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    for given in (str(b), "../builds/v3"):
        back = BuildResult.load(given)
        for p in (back.pack_dir, back.model_dir, back.labels_csv, *back.delta_dirs):
            assert (elsewhere / p).resolve().exists(), p


def test_old_cwd_relative_build_json_still_loads(tmp_path, monkeypatch):
    b = _build(tmp_path)
    monkeypatch.chdir(tmp_path)
    (b / "build.json").write_text(json.dumps({
        "version": 3, "build_dir": "builds/v3", "labels_csv": "builds/v3/labels.csv",
        "pack_dir": "builds/v3/packs", "delta_dirs": ["builds/v3/deltas/from-v2"], "model_dir": None,
        "report": None, "stats": {}}))
    back = BuildResult.load("builds/v3")
    assert back.pack_dir == "builds/v3/packs" and back.delta_dirs == ["builds/v3/deltas/from-v2"]
