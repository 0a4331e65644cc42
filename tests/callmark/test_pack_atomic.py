"""Kill a process at random moments of applying a delta / expanding a pack: the pack stays usable.

Each round forks a child that runs the real client function on the real files, sends it SIGKILL after
a random delay spread over the whole operation (measured first), then fully verifies the pack file:
SQLite integrity, recomputed state hash equal to the stored one, and equal to the old or the new
version, never anything else.
"""
import multiprocessing
import os
import random
import shutil
import time

import numpy as np
import pytest

from callmark.pack import PackReader, apply_delta, expand_wire, verify_pack
from trainer.packs import PackConfig, build_packs, make_deltas, synthetic_table

ROUNDS = 100

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")


def _run(fn, args, kill_after=None):
    # forkserver: children fork from a clean single-threaded server with callmark preloaded, so they
    # start in milliseconds and never inherit locks from threads of other tests
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["callmark.pack", "numpy", "zstandard"])
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
