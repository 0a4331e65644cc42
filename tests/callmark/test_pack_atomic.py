"""Kill a process at random moments of applying a delta / expanding a pack / compacting: the pack stays usable.

Each round forks a child that runs the real client function on the real files, sends it SIGKILL after
a random delay spread over the whole operation (measured first), then fully verifies the pack file:
SQLite integrity, recomputed state hash equal to the stored one, and equal to the old or the new
version, never anything else. The layered pack (base + overlays, callmark.pack_layers) is killed while
a delta is merged into its overlay and while a delta compacts it into a new base.
"""
import multiprocessing
import os
import random
import shutil
import time

import numpy as np
import pytest

from callmark import pack_layers
from callmark.pack import PackReader, apply_delta, expand_wire, verify_pack
from trainer.packs import PackConfig, build_packs, make_deltas, synthetic_table

ROUNDS = 100

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")


def _run(fn, args, kill_after=None):
    # forkserver: children fork from a clean single-threaded server with callmark preloaded, so they
    # start in milliseconds and never inherit locks from threads of other tests
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["callmark.pack", "callmark.pack_layers", "numpy", "zstandard"])
    p = ctx.Process(target=fn, args=args)  # the library function itself: nothing else to import
    t0 = time.perf_counter()
    p.start()
    if kill_after is not None:
        time.sleep(kill_after)
        p.kill()
    p.join(timeout=120)
    if p.is_alive():
        p.kill()
        pytest.fail("child did not finish within 120 s")
    return p.exitcode, time.perf_counter() - t0


def _restore(src, dest):
    tmp = dest + ".restore"
    shutil.copyfile(src, tmp)
    os.replace(tmp, dest)


@pytest.fixture(scope="module")
def packs(tmp_path_factory):
    root = tmp_path_factory.mktemp("atomic")
    cfg = PackConfig(lite=False, provinces=False)
    t1 = synthetic_table(3000, seed=11, ranges=40)
    keep = np.random.default_rng(1).random(t1.n_labels) > 0.1
    t2 = t1.subset(keep)
    t2.labels["reporters"][::20] = 96
    i1 = build_packs(t1, 1, str(root / "v1"), cfg)
    i2 = build_packs(t2, 2, str(root / "v2"), cfg)
    d = make_deltas(str(root / "v1"), str(root / "v2"), str(root / "d"))
    return {"root": root, "v1": str(root / "v1" / i1["packs"][0]["sqlite"]),
            "wire2": str(root / "v2" / i2["packs"][0]["wire"]),
            "delta": str(root / "d" / d["deltas"][0]["file"]),
            "h1": i1["packs"][0]["state_hash"], "h2": i2["packs"][0]["state_hash"],
            "probe": int(t2.labels["key"][0])}


@pytest.mark.parametrize("op", ["apply", "expand"])
def test_killed_update_leaves_a_valid_pack(packs, op, tmp_path):
    phone = str(tmp_path / "CN-full.sqlite")
    _restore(packs["v1"], phone)
    fn, args = (apply_delta, (phone, packs["delta"])) if op == "apply" else (expand_wire, (packs["wire2"], phone))
    _run(fn, args)  # warm the fork server
    _restore(packs["v1"], phone)
    code, full_time = _run(fn, args)  # one uninterrupted run to learn how long the operation takes
    assert code == 0 and verify_pack(phone)["state_hash"] == packs["h2"]
    rng = random.Random(1234 if op == "apply" else 4321)
    outcomes = {packs["h1"]: 0, packs["h2"]: 0}
    for _ in range(ROUNDS):
        _restore(packs["v1"], phone)
        _run(fn, args, kill_after=rng.uniform(0, 1.1 * full_time))
        meta = verify_pack(phone)  # integrity, stored == recomputed hash
        assert meta["state_hash"] in outcomes, "pack is neither the old nor the new version"
        outcomes[meta["state_hash"]] += 1
        with PackReader(phone) as r:
            r.lookup(packs["probe"])
    # the kills landed both before and after the switch, so they covered the operation
    print(op, full_time, outcomes)
    assert outcomes[packs["h1"]] > 0 and outcomes[packs["h2"]] > 0, outcomes
    # leftover temp files of killed runs are cleaned by the next run
    _restore(packs["v1"], phone)
    fn(*args)
    assert verify_pack(phone)["state_hash"] == packs["h2"]
    assert [f for f in os.listdir(tmp_path) if ".tmp-" in f] == []


@pytest.fixture(scope="module")
def layered(packs, tmp_path_factory):
    """A layered pack at v1 whose overlay already holds changes (v0 -> v1), to restore before each round."""
    root = tmp_path_factory.mktemp("layered")
    cfg = PackConfig(lite=False, provinces=False)
    t1 = synthetic_table(3000, seed=11, ranges=40)
    t0 = t1.subset(np.random.default_rng(2).random(t1.n_labels) > 0.05)
    t0.labels["category"][::15] = 4
    i0 = build_packs(t0, 0, str(root / "v0"), cfg)
    d01 = make_deltas(str(root / "v0"), str(packs["root"] / "v1"), str(root / "d01"))["deltas"][0]
    src = str(root / "src")
    pack_layers.install_full(str(root / "v0" / i0["packs"][0]["wire"]), src)
    pack_layers.apply_delta(src, str(root / "d01" / d01["file"]), d01["to_state_hash"])
    assert pack_layers.read_meta(src)["state_hash"] == packs["h1"]
    assert set(pack_layers.read_head(src)["files"]) == {"base", "settled"}
    return src


def _restore_dir(src, dest):
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(src, dest)


@pytest.mark.parametrize("op", ["layered-apply", "layered-compact"])
def test_killed_layered_update_leaves_old_or_new_state(packs, layered, op, tmp_path):
    phone = str(tmp_path / "CN-full")
    # apply merges the delta into the overlay; compact (a zero share) writes a new base instead
    policy = pack_layers.LayerPolicy(0.5, 0.9) if op == "layered-apply" else pack_layers.LayerPolicy(0.0, 0.0)
    args = (phone, packs["delta"], packs["h2"], None, policy)
    fn = pack_layers.apply_delta
    _restore_dir(layered, phone)
    _run(fn, args)  # warm the fork server
    _restore_dir(layered, phone)
    code, full_time = _run(fn, args)
    assert code == 0 and pack_layers.verify(phone)["state_hash"] == packs["h2"]
    levels = {"base"} if op == "layered-compact" else {"base", "settled", "recent"}
    assert set(pack_layers.read_head(phone)["files"]) == levels
    rng = random.Random(99 if op == "layered-apply" else 77)
    outcomes = {packs["h1"]: 0, packs["h2"]: 0}
    for _ in range(ROUNDS):
        _restore_dir(layered, phone)
        _run(fn, args, kill_after=rng.uniform(0, 1.1 * full_time))
        meta = pack_layers.verify(phone)  # every file's integrity, HEAD == recomputed hash and count
        assert meta["state_hash"] in outcomes, "pack is neither the old nor the new version"
        outcomes[meta["state_hash"]] += 1
        with pack_layers.LayeredReader(phone) as r:
            r.lookup(packs["probe"])
    print(op, full_time, outcomes)
    assert outcomes[packs["h1"]] > 0 and outcomes[packs["h2"]] > 0, outcomes
    # files of killed runs are collected by the next run: only HEAD's files remain
    _restore_dir(layered, phone)
    fn(*args)
    head = pack_layers.read_head(phone)
    assert sorted(os.listdir(phone)) == sorted(list(head["files"].values()) + ["HEAD", "LOCK"])
