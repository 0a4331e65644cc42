"""End to end against a real server process on loopback (`callmark serve`, gunicorn):
a simulated crowd uploads its tags through handsets, the build pipeline turns the server's store
into a signed release, a phone syncs it, labels a day of calls against ground truth, and after a
second day of tags syncs the next release as a delta."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests

from callmark import pack_layers
from tools.handset import Handset
from tools.local_process import NotReady, ProcessExited, free_port, stop_process, wait_until_ready

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture()
def server(tmp_path):
    port = free_port()
    env = dict(os.environ, CALLMARK_DATA_DIR=str(tmp_path / "srv"), CALLMARK_EXPORTS_DIR=str(tmp_path / "exports"),
               CALLMARK_RATELIMIT_ENABLED="0", CALLMARK_DEVICE_SECRET="e2e-secret",
               CALLMARK_SYNC_MIN_WAIT_S="60", CALLMARK_SYNC_JITTER_S="10")
    (tmp_path / "exports").mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "tools.cli", "serve", "--port", str(port), "--workers", "1",
                             "--threads", "4"], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:                 # any HTTP answer: the app is up (no release exists yet)
        requests.get(url + "/v1/manifest", timeout=2)
        return True
    try:
        wait_until_ready(proc, answers, timeout_s=60, what="callmark serve", interval_s=0.3)
    except (ProcessExited, NotReady):
        proc.kill()
        raise RuntimeError(f"server did not start: {proc.stderr.read().decode()[-2000:]}") from None
    yield url, tmp_path
    stop_process(proc, grace_s=15)


def upload_crowd(url: str, work: Path, events: list[dict]) -> int:
    """Each simulated reporter is a handset: queue its tags offline, then upload them."""
    by_reporter = defaultdict(list)
    for e in events:
        by_reporter[e["reporter"]].append(e)
    stored = 0
    for rep, evs in by_reporter.items():
        with Handset(work / "crowd" / rep, url, device_id=f"sim-device-{rep}", sleep=lambda s: None) as h:
            for e in evs:
                h.tag(e["number"], e["category"], company=e.get("company"), note=e.get("note"),
                      ring_s=e.get("ring_s"), talk_s=e.get("talk_s"), answered=e.get("answered"),
                      direction=e.get("direction"), time=e["ts"], event_id=e["event_id"])
            r = h.upload()
            assert r["status"] == "ok" and r["pending"] == 0, r
            stored += r["stored"]
    return stored


def build_and_publish(tmp: Path, version: int, sim: Path):
    from trainer.pipeline import BuildConfig, build
    from publisher import publish_release
    res = build(BuildConfig(out=str(tmp / "builds"), version=version, data_dir=str(tmp / "srv"),
                            verified=str(sim / "verified.csv"), student=False), echo=lambda s: None)
    return publish_release(tmp / "exports", res.pack_dir, res.delta_dirs, res.model_dir, "stable", tmp / "keys")


def test_crowd_to_release_to_phone_and_a_delta_next_day(server):
    from tools.simulate import simulate
    from publisher import init_keys
    url, tmp = server
    sim = tmp / "sim"
    simulate(str(sim), days=4, users=2000, seed=3)
    events = [json.loads(x) for x in (sim / "tags.jsonl").read_text().splitlines() if x.strip()]
    with open(sim / "calls.csv", newline="") as f:
        end = max(row["start"] for row in csv.DictReader(f))
    local = datetime.fromisoformat(end.replace("Z", "+00:00")) + timedelta(hours=8)  # China time
    split = (datetime(local.year, local.month, local.day, tzinfo=timezone.utc)
             - timedelta(hours=8)).strftime("%Y-%m-%dT%H:%M:%SZ")  # the last local day starts
    first = [e for e in events if e["ts"] < split]
    last = [e for e in events if e["ts"] >= split]
    assert upload_crowd(url, tmp, first) == len(first)  # every tag stored once, through the API

    init_keys(tmp / "keys", threshold=1, roots=1)
    m1 = build_and_publish(tmp, 1, sim)
    assert m1.packs and m1.packs[0].entries > 0

    phone = Handset(tmp / "phone", url, root=tmp / "keys" / "root" / "1.root.json", sleep=lambda s: None)
    r = phone.sync()
    assert (r.status, r.pack_version) == ("full", 1)
    pack = m1.pack("CN-full")
    assert pack_layers.state_hash(str(phone.store.pack_path("CN-full"))) == pack.state_hash

    day_calls = tmp / "day.csv"  # the last simulated day's calls
    with open(sim / "calls.csv", newline="") as fi, open(day_calls, "w", newline="") as fo:
        rd = csv.DictReader(fi)
        w = csv.DictWriter(fo, rd.fieldnames)
        w.writeheader()
        w.writerows(row for row in rd if row["start"] >= split)
    rep = phone.replay(day_calls, truth_csv=sim / "truth.csv")
    acc = rep["accuracy"]
    assert rep["calls"] > 1000 and acc["harmful_calls"] > 100 and acc["benign_calls"] > 100
    assert acc["harmful_flagged"] > 5 * max(acc["benign_flagged"], 0.001)  # warnings hit the bad callers
    assert acc["benign_blocked"] <= 0.01
    assert rep["latency"]["p50_us"] < 5000

    assert upload_crowd(url, tmp, last) == len(last)  # the second day's tags
    m2 = build_and_publish(tmp, 2, sim)
    assert any(d.from_version == 1 for d in m2.deltas)
    r = phone.sync(force=True)
    assert (r.status, r.pack_version, r.fallback) == ("delta", 2, "")
    assert r.bytes_downloaded < m2.pack("CN-full").length
    assert pack_layers.state_hash(str(phone.store.pack_path("CN-full"))) == m2.pack("CN-full").state_hash
    phone.close()


def test_a_real_model_is_verified_installed_and_scores_pack_misses(tmp_path):
    """The student (LiteRT int8) ships in a release; the phone replays its test vectors before use."""
    from tests.tools.handset_helpers import FRAUD, UNKNOWN, Publisher
    from tools.simulate import simulate
    from trainer.model.student import StudentConfig, train_student
    simulate(str(tmp_path / "sim"), days=3, users=300, seed=5)
    cfg = StudentConfig(epochs=3)
    model = train_student(str(tmp_path / "sim"), str(tmp_path / "model"), cfg, distill=False)
    p = Publisher(tmp_path / "rel")
    p.publish(1, model_dir=model)
    with Handset(tmp_path / "phone", str(p.exports), root=p.root_file) as h:
        r = h.sync()
        assert (r.status, r.model) == ("full", "updated")
        assert r.bytes_downloaded > (Path(model) / "model.tflite").stat().st_size
        d = h.label(UNKNOWN)
        model_step = [x for x in d.reasons if x.step == "model"]
        assert model_step and 0.0 <= model_step[0].confidence <= 1.0
        assert all(x.step != "model" for x in h.label(FRAUD).reasons)
        assert h.sync(force=True).model == "current"
