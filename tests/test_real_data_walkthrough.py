"""docs/real-data.md, run as written on a slice of the real FTC stream and PhoneBlock list.

The data is read by path from ../shared/data (relative to the repository root) and sliced into the
test's temporary directory; it is never copied into the repository. Skipped when absent
(CALLMARK_SHARED_DATA=DIR reads it from elsewhere)."""
import csv
import gzip
import json
import os
import re
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from callmark.labels import read_labels
from callmark.numbers import publishable_key
from callmark.pack_wire import decode_full
from tools.cli import main

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
# ../shared/data next to the checkout; CALLMARK_SHARED_DATA points elsewhere (e.g. from a worktree)
DATA = Path(os.environ.get("CALLMARK_SHARED_DATA") or REPO.parent / "shared" / "data")
FTC = "ftc-dnc/complaint_numbers_by_day.csv.gz"
PHONEBLOCK = "phoneblock-de/blocklist_votes_2026-05.csv"
FTC_FROM_DAY = "2025-12-02"  # the slice: the last published days (≈ 50 k complaints)
PHONEBLOCK_ROWS = 3000


def doc_commands() -> list[list[str]]:
    """Every `callmark …` line of the doc's sh blocks, in order."""
    text = (REPO / "docs/real-data.md").read_text()
    out = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        for line in block.splitlines():
            line = line.strip().rstrip("&").strip()
            if line.startswith("callmark "):
                out.append(shlex.split(line)[1:])
    return out


def slices(tmp: Path) -> dict[str, Path]:
    ftc, pb = tmp / "ftc-slice.csv.gz", tmp / "phoneblock-slice.csv"
    with gzip.open(DATA / FTC, "rt", newline="") as fin, gzip.open(ftc, "wt", newline="") as fout:
        r, w = csv.reader(fin), csv.writer(fout)
        w.writerow(next(r))
        w.writerows(row for row in r if len(row) > 1 and row[1] >= FTC_FROM_DAY)
    with open(DATA / PHONEBLOCK, newline="") as fin, open(pb, "w", newline="") as fout:
        fout.writelines(line for i, line in zip(range(PHONEBLOCK_ROWS + 1), fin))
    return {f"../shared/data/{FTC}": ftc, f"../shared/data/{PHONEBLOCK}": pb}


def run(args):
    r = CliRunner().invoke(main, args, catch_exceptions=False)
    assert r.exit_code == 0, (args, r.output)
    return r.output


def published(labels_csv) -> set[str]:
    return {r["number"] for r in read_labels(str(labels_csv), published_only=True)}


@pytest.mark.skipif(not (DATA / FTC).is_file() or not (DATA / PHONEBLOCK).is_file(),
                    reason=f"real data not found at {DATA} ({FTC}, {PHONEBLOCK}); see "
                           "docs/real-data.md")
def test_walkthrough_runs_as_written_on_a_slice(tmp_path, monkeypatch):
    paths = slices(tmp_path)
    monkeypatch.chdir(tmp_path)
    commands = doc_commands()
    assert [c[0] for c in commands][:4] == ["import", "import", "build", "keys"]
    outputs = []
    for args in commands:
        if args[0] == "serve":  # the doc backgrounds a server; readyz is checked in-process below
            continue
        outputs.append(run([str(paths.get(a, a)) for a in args]))

    build = json.loads(outputs[2].strip().splitlines()[-1])
    assert build["sources"]["ftc-dnc"]["published"] > 0
    assert build["sources"]["phoneblock"]["published"] > 0
    assert set(build["packs"]) == {"US", "DE"}
    assert f"{build['bad_rows']:,} bad rows" in outputs[2]

    real = tmp_path / "var/real"
    exports = real / "exports"
    keys = set()
    for art in (exports / "artefacts").glob("*.pack"):
        keys.update(decode_full(art.read_bytes())[1].labels["key"].tolist())
    assert keys and all(publishable_key(k) for k in keys)
    assert not keys & {1833, 110, 1202, 11111111111, 8686, 8612}

    labels = list(read_labels(str(real / "builds/v1/labels.csv"), published_only=True))
    top = {}
    for r in sorted(labels, key=lambda r: -int(r["reporters"])):
        region = "US" if r["number"].startswith("+1") else "DE" if r["number"].startswith("+49") else None
        if region and region not in top:
            top[region] = r
    for region, row in top.items():  # each phone labels a published number of its own region
        out = run(["handset", "--state", str(real / f"phone-{region.lower()}"), "label", row["number"]])
        assert row["category"] in out and "pack_exact" in out

    from server import create_app
    app = create_app({"data_dir": str(tmp_path / "srv"), "exports_dir": str(exports),
                      "device_secret": "walkthrough"})
    detail = app.test_client().get("/readyz").get_json()["detail"]
    assert detail["lookup_entries"] > 0 and detail["lookup_version"] == "stable-v1"

    diff = json.loads(run(["diff", str(real / "ftc-days/v1"), str(real / "ftc-days/v2"), "--json",
                           "--top", "100000"]))
    added = {x["number"] for r in diff["regions"] for x in r["top"]["added"]}
    new = published(real / "ftc-days/v2/labels.csv") - published(real / "ftc-days/v1/labels.csv")
    assert added and added == new
