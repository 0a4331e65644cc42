"""The reference handset against real signed releases: sync (full, delta, fallback, resume, hints,
backoff), offline labelling, the tag queue, and fault tests (corrupt download, server down, kill)."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from callmark.categories import UnknownCategoryError
from callmark.manifest import Manifest
from callmark import pack_layers
from tests.tools.handset_helpers import (
    BANK, DELIVERY, FRAUD, NEW_FRAUD, RANGE_START, TELE, UNKNOWN, Publisher, dead_url, serve,
)
from tools.handset import Handset
from tools.handset_cli import command
from tools.handset_net import Backoff

REPO = Path(__file__).resolve().parents[2]


class Clock:
    def __init__(self, t: float = 1_790_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture(scope="module")
def pub(tmp_path_factory):
    p = Publisher(tmp_path_factory.mktemp("release"))
    p.publish(1)
    return p


def phone(path, url, pub, **kw) -> Handset:
    kw.setdefault("sleep", lambda s: None)
    kw.setdefault("rng", random.Random(1))
    return Handset(path, url, root=pub.root_file, **kw)


def manifest(pub) -> Manifest:
    env = json.loads((pub.exports / "channels" / "stable" / "manifest.json").read_text())
    return Manifest.from_dict(env["signed"])


def release(tmp_path, versions=(1,)) -> Publisher:
    """A private publisher (own keys and exports) with `versions` published."""
    p = Publisher(tmp_path / "rel")
    for v in versions:
        p.publish(v)
    return p


def test_sync_from_a_mirror_then_label_offline(pub, tmp_path):
    with phone(tmp_path / "ph", str(pub.exports), pub) as h:
        r = h.sync()
        assert (r.status, r.pack_version, r.deltas_applied) == ("full", 1, 0)
        m = manifest(pub)
        assert r.bytes_downloaded == m.packs[0].length
        pack = h.store.pack_path("CN-full")
        assert pack_layers.state_hash(str(pack)) == m.packs[0].state_hash  # the file itself, recomputed
        got = {n: h.label(n) for n in (FRAUD, TELE, DELIVERY, BANK, UNKNOWN)}
        assert (got[FRAUD].action, got[FRAUD].category, got[FRAUD].source) == ("reject", "fraud", "pack_exact")
        assert (got[TELE].action, got[TELE].category) == ("warn", "telemarketing")
        assert (got[DELIVERY].action, got[DELIVERY].category) == ("label", "delivery")
        assert (got[BANK].source, got[BANK].company) == ("verified_business", "中国工商银行")
        assert (got[UNKNOWN].action, got[UNKNOWN].source) == ("allow", "default")
        inside = "+86" + str(int(RANGE_START[3:]) + 42)
        assert h.label(inside).source == "pack_range"
        h.list_add("block", DELIVERY)
        h.list_add("contact", FRAUD, "Aunt")
        assert h.label(DELIVERY).action == "reject" and h.label(FRAUD).action == "allow"
        # the wait hint: an immediate second sync does nothing
        assert h.sync().status == "waiting"


def test_delta_sync_and_wait_hints_over_http(tmp_path):
    p = release(tmp_path)
    clock = Clock()
    with serve(p.exports, tmp_path / "srv", sync_min_wait_s=3600, sync_jitter_s=600) as url:
        with phone(tmp_path / "ph", url, p, clock=clock) as h:
            assert h.sync().status == "full"
            s = h.store.load_sync()
            assert 3600 <= s.next_sync_after - clock.t <= 4200  # server min wait + jitter
            p.publish(2)
            r = h.sync()
            assert r.status == "waiting" and r.wait_s > 3000
            clock.t += 4300
            base = pack_layers.read_head(str(h.store.pack_path("CN-full")))["files"]["base"]
            r = h.sync()
            assert (r.status, r.pack_version, r.deltas_applied, r.fallback) == ("delta", 2, 1, "")
            # the delta went into an overlay: the base file stays, the bytes written are the overlay's
            head = pack_layers.read_head(str(h.store.pack_path("CN-full")))
            assert r.pack_layers in (["recent"], ["settled"]) and head["files"]["base"] == base
            assert r.pack_bytes_written == head["bytes"][r.pack_layers[0]] < r.pack_base_bytes
            m = manifest(p)
            assert r.bytes_downloaded == m.deltas[0].length < m.packs[0].length
            assert pack_layers.state_hash(str(h.store.pack_path("CN-full"))) == m.packs[0].state_hash
            assert h.label(NEW_FRAUD).category == "fraud"
            assert h.label(TELE).category == "loans"
            clock.t += 4300
            assert h.sync().status == "up_to_date"


def _corrupt(path: Path) -> bytes:
    data = path.read_bytes()
    bad = bytearray(data)
    bad[len(bad) // 2] ^= 0xFF
    path.write_bytes(bytes(bad))
    return data


def test_corrupted_delta_is_rejected_and_the_full_pack_is_fetched(tmp_path):
    p = release(tmp_path)
    with serve(p.exports, tmp_path / "srv") as url:
        with phone(tmp_path / "ph", url, p) as h:
            h.sync()
            m = Manifest.from_dict(p.publish(2).to_dict())
            _corrupt(p.exports / m.deltas[0].path)
            r = h.sync(force=True)
            assert r.status == "full" and "TamperedArtefactError" in r.fallback
            assert r.pack_version == 2
            assert pack_layers.state_hash(str(h.store.pack_path("CN-full"))) == m.packs[0].state_hash
            assert not list(h.store.downloads.iterdir())  # the bad bytes were not kept


def test_corrupted_full_pack_is_rejected_and_the_old_pack_stays(tmp_path):
    p = release(tmp_path)
    with serve(p.exports, tmp_path / "srv") as url:
        with phone(tmp_path / "ph", url, p) as h:
            assert h.sync().status == "full"
            old = pack_layers.read_meta(str(h.store.pack_path("CN-full")))
            m = Manifest.from_dict(p.publish(2).to_dict())
            good_delta = _corrupt(p.exports / m.deltas[0].path)
            good_full = _corrupt(p.exports / m.packs[0].path)
            r = h.sync(force=True)
            assert r.status == "failed" and "TamperedArtefactError" in r.error
            assert pack_layers.read_meta(str(h.store.pack_path("CN-full")))["state_hash"] == old["state_hash"]
            assert h.label(FRAUD).action == "reject"  # still labelling from v1
            assert h.label(NEW_FRAUD).source == "default"
            assert h.store.load_sync().failures == 1
            (p.exports / m.deltas[0].path).write_bytes(good_delta)
            (p.exports / m.packs[0].path).write_bytes(good_full)
            r = h.sync(force=True)
            assert (r.status, r.pack_version) == ("delta", 2)
            assert h.store.load_sync().failures == 0


def test_resumes_a_partial_download_with_range(tmp_path):
    p = release(tmp_path)
    entry = manifest(p).packs[0]
    blob = (p.exports / entry.path).read_bytes()
    with serve(p.exports, tmp_path / "srv") as url:
        h = phone(tmp_path / "ph", url, p)
        part = h.store.downloads / (Path(entry.path).name + ".part")
        part.write_bytes(blob[: len(blob) // 2])  # a download cut off half way
        r = h.sync()
        assert r.status == "full"
        assert r.bytes_downloaded == len(blob) - len(blob) // 2  # only the missing half travelled
        assert not part.exists()
        h.close()


def test_server_down_labels_keep_working_and_tags_wait(tmp_path):
    p = release(tmp_path)
    clock = Clock()
    dead = dead_url()
    h = phone(tmp_path / "ph", str(p.exports), p, clock=clock,
              backoff=Backoff(base_s=60, cap_s=6 * 3600, retries=2))
    assert h.sync().status == "full"
    h.close()
    h = phone(tmp_path / "ph", dead, p, clock=clock, backoff=Backoff(base_s=60, cap_s=6 * 3600, retries=2))
    waits = []
    for _ in range(12):  # the server stays down for days
        clock.t = max(clock.t, h.store.load_sync().next_sync_after) + 1
        r = h.sync()
        assert r.status == "offline" and r.bytes_downloaded == 0
        waits.append(r.wait_s)
    assert waits[0] < 60 and waits[3] > waits[0] * 3  # exponential backoff ...
    assert max(waits) <= 6 * 3600 and waits[-1] >= 3 * 3600  # ... capped at a few hours
    assert h.label(FRAUD).action == "reject"  # labels keep working offline
    e1 = h.tag(FRAUD, "fraud", note="said I won a prize")
    e2 = h.tag(UNKNOWN, "real_estate", company="安居房产")
    up = h.upload()
    assert (up["status"], up["pending"]) == ("offline", 2)
    h.close()
    with serve(p.exports, tmp_path / "srv") as url:
        h = phone(tmp_path / "ph", url, p, clock=clock)
        clock.t = h.store.load_sync().next_sync_after + 1
        p.publish(2)
        assert h.sync().status == "delta"
        up = h.upload(batch_size=1)
        assert (up["status"], up["sent"], up["stored"], up["batches"], up["pending"]) == ("ok", 2, 2, 2, 0)
        # a lost acknowledgement: the same events go again and count as duplicates, not new tags
        h.store.db.execute("UPDATE tags SET acked = NULL WHERE event_id IN (?, ?)", (e1, e2))
        up = h.upload()
        assert (up["stored"], up["duplicates"], up["pending"]) == (0, 2, 0)
        h.close()


def test_rejected_events_do_not_block_the_queue(tmp_path):
    p = release(tmp_path)
    with serve(p.exports, tmp_path / "srv") as url:
        h = phone(tmp_path / "ph", url, p)
        good = h.tag(FRAUD, "fraud")
        h.tag(TELE, "telemarketing", time="2099-01-01T00:00:00Z")  # the server refuses future times
        up = h.upload()
        assert (up["rejected"], up["sent"], up["stored"], up["pending"]) == (1, 1, 1, 0)
        assert h.store.tag_counts() == {"pending": 0, "acked": 1, "rejected": 1}
        row = h.store.db.execute("SELECT acked FROM tags WHERE event_id = ?", (good,)).fetchone()
        assert row[0] is not None  # the good event went through in the next batch
        h.close()
        with pytest.raises(UnknownCategoryError, match="fraud"):
            Handset(tmp_path / "ph").tag(FRAUD, "scam")


def test_killed_during_apply_leaves_the_old_pack(tmp_path):
    p = release(tmp_path)
    h = phone(tmp_path / "ph", str(p.exports), p)
    assert h.sync().status == "full"
    h.close()
    old = pack_layers.read_meta(str(h.store.pack_path("CN-full")))["state_hash"]
    p.publish(2)
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(REPO)!r})
        import callmark.pack_layers as pl
        def die(tmp, final):  # the new overlay is fully written, HEAD not yet swapped
            os.kill(os.getpid(), signal.SIGKILL)
        pl.commit_file = die
        from tools.handset import Handset
        Handset({str(tmp_path / 'ph')!r}).sync(force=True)
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL
    pack = h.store.pack_path("CN-full")
    assert pack_layers.state_hash(str(pack)) == old  # the old pack is intact and readable
    h = phone(tmp_path / "ph", str(p.exports), p)
    assert h.label(FRAUD).action == "reject"
    r = h.sync(force=True)
    assert (r.status, r.pack_version) == ("delta", 2)
    head = pack_layers.read_head(str(pack))  # the dead run's files are gone: only HEAD's remain
    assert sorted(os.listdir(pack)) == sorted(list(head["files"].values()) + ["HEAD", "LOCK"])
    h.close()


def test_cli_round_trip(tmp_path):
    p = release(tmp_path)
    run = CliRunner().invoke
    base = ["--state", str(tmp_path / "ph"), "--server", str(p.exports)]
    r = run(command, [*base, "sync"])
    assert r.exit_code != 0 and "--root" in r.output  # first sync needs the trusted root
    r = run(command, [*base, "--root", str(p.root_file), "sync", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["status"] == "full"
    r = run(command, ["--state", str(tmp_path / "ph"), "label", FRAUD, "--json"])
    d = json.loads(r.output)
    assert (d["action"], d["category"], d["reasons"][0]["step"]) == ("reject", "fraud", "pack_exact")
    r = run(command, ["--state", str(tmp_path / "ph"), "label", UNKNOWN, "--ring-s", "1.2", "--not-answered"])
    assert r.exit_code == 0 and r.output.startswith("WARN  one_ring") and "tag this number" in r.output
    r = run(command, ["--state", str(tmp_path / "ph"), "tag", UNKNOWN, "one-ring"])
    assert r.exit_code != 0 and "one_ring" in r.output and "Traceback" not in r.output
    r = run(command, ["--state", str(tmp_path / "ph"), "tag", UNKNOWN, "one_ring"])
    assert r.exit_code == 0 and "1 pending" in r.output
    r = run(command, ["--state", str(tmp_path / "ph"), "label", UNKNOWN, "--time", "yesterday"])
    assert r.exit_code != 0 and "ISO-8601" in r.output
    r = run(command, ["--state", str(tmp_path / "ph"), "label", "hello"])  # a typo is not a caller
    assert r.exit_code == 2 and "holds no digit" in r.output and "Traceback" not in r.output
    assert run(command, ["--state", str(tmp_path / "ph"), "label", ""]).exit_code == 0  # a hidden caller
    r = run(command, ["--state", str(tmp_path / "ph"), "status", "--json"])
    st = json.loads(r.output)
    assert st["pack"]["version"] == "1" and st["tags"]["pending"] == 1
    text = run(command, ["--state", str(tmp_path / "ph"), "status"]).output
    assert "{" not in text and "pack      CN-full v1" in text and "tags      pending 1" in text
    assert " full  manifest v" in text   # the last syncs, with times in UTC


def test_model_runs_only_on_a_miss_and_sees_local_history(pub, tmp_path):
    seen = []

    class FakeRunner:  # stands in for callmark.model.ModelRunner (same score() contract)
        def score(self, facts):
            seen.append(facts)
            return {"risk": 0.85, "probs": {"fraud": 0.7, "telemarketing": 0.2, "legit": 0.1}}

    with phone(tmp_path / "ph", str(pub.exports), pub) as h:
        h.sync()
        h._runner = FakeRunner()
        t0 = 1_790_000_000.0  # 2026-09-21 14:13 UTC = 22:13 China time
        h.label(UNKNOWN, time=t0, answered=True, talk_s=30)
        d = h.label(UNKNOWN, time=t0 + 86400)
        assert (d.action, d.category, d.source) == ("warn", "fraud", "model")
        assert seen[0]["hour"] == 22 and "prior_calls" not in seen[0]
        assert (seen[1]["prior_calls"], seen[1]["prior_answered"], seen[1]["last_talk_s"]) == (1, 1, 30.0)
        assert seen[1]["days_since_last"] == pytest.approx(1.0)
        h.label(FRAUD)
        assert len(seen) == 2  # a pack hit never runs the model
        assert seen[0]["pack_block_harmful"] == 0
        h.label(FRAUD[:-2] + "77")  # not in the pack, beside a fraud label in its 100-number block
        assert len(seen) == 3 and seen[2]["pack_block_harmful"] == 1


def test_remembered_call_log_feeds_local_history_and_call_bombing_without_deciding(pub, tmp_path):
    seen = []

    class FakeRunner:
        def score(self, facts):
            seen.append(facts)
            return {"risk": 0.1, "probs": {"legit": 0.9, "fraud": 0.1}}

    with phone(tmp_path / "ph", str(pub.exports), pub) as h:
        h.sync()
        h._runner = FakeRunner()
        t0 = 1_790_000_000.0
        h.remember(UNKNOWN, time=t0 - 3 * 86400, answered=True, talk_s=12)
        h.remember(DELIVERY, time=t0 - 60)  # a benign pack label: known, not an unknown call
        assert seen == []  # the call log is recorded, never scored
        h.label(UNKNOWN, time=t0)
        assert (seen[0]["prior_calls"], seen[0]["prior_answered"], seen[0]["last_talk_s"]) == (1, 1, 12.0)
        assert seen[0]["days_since_last"] == pytest.approx(3.0)
        for i in range(3):  # three more calls in ten minutes from one unknown number
            h.remember("+8613311113333", time=t0 + 10 + i)
        d = h.label("+8613311113333", time=t0 + 20)
        assert (d.action, d.source) == ("silence", "rule:call_bombing")
        with pytest.raises(Exception, match="number must be a string"):
            h.remember(12345, time=t0)


def test_a_broken_model_is_not_installed(tmp_path):
    p = release(tmp_path)
    bad = tmp_path / "badmodel"
    bad.mkdir()
    (bad / "model.tflite").write_bytes(b"not a flatbuffer" * 10)
    (bad / "contract.json").write_text(json.dumps({"format": 1, "inputs": [], "outputs": [], "classes": [1]}))
    (bad / "test_vectors.json").write_text(json.dumps({"vectors": []}))
    p.publish(2, model_dir=bad)
    with phone(tmp_path / "ph", str(p.exports), p) as h:
        r = h.sync()
        assert r.status == "full" and r.model.startswith("kept-old")
        assert h.store.load_sync().model_sha256 == ""
        assert not [d for d in h.store.model_dir("0" * 16).parent.iterdir()]  # nothing half-installed
        assert h.label(FRAUD).action == "reject"


def test_a_release_line_started_again_is_refused_with_a_hint(tmp_path):
    import shutil
    p = release(tmp_path, versions=(1, 2))
    state = tmp_path / "ph"
    run = CliRunner().invoke
    assert run(command, ["--state", str(state), "--server", str(p.exports), "--root", str(p.root_file),
                         "sync"]).exit_code == 0
    for child in p.exports.iterdir():  # the maintainer clears exports and publishes a new line's v1
        shutil.rmtree(child) if child.is_dir() else child.unlink()
    p.pack_dirs.clear()
    p.publish(1)
    r = run(command, ["--state", str(state), "--server", str(p.exports), "sync", "--force"])
    assert r.exit_code == 1 and "RollbackError" in r.output
    assert "a phone never goes back" in r.output and "another --state" in r.output


def test_status_says_what_model_is_installed(tmp_path):
    p = release(tmp_path)
    sha = "ab" * 32
    with phone(tmp_path / "ph", str(p.exports), p) as h:
        h.sync()
        d = h.store.model_dir(sha)
        d.mkdir(parents=True)
        (d / "model.tflite").write_bytes(b"\0" * 32_000)  # status reads files only, never runs the model
        (d / "contract.json").write_text(json.dumps({"classes": [1, 2, 3], "warn_risk": 0.6796875}))
        s = h.store.load_sync()
        s.model_sha256 = sha
        h.store.save_sync(s)
        assert h.status()["model_info"] == {"bytes": 32_000, "classes": 3, "warn_risk": 0.6796875}
    out = CliRunner().invoke(command, ["--state", str(tmp_path / "ph"), "status"]).output
    assert f"model     {sha[:16]} (32,000 bytes, 3 classes, warns at risk >= 0.680)" in out
