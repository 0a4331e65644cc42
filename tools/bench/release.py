"""Benchmark signed releases: what verification costs a client and a publisher.

Figures (ratios against baselines measured in the same run):
- client refresh (walk the root chain + verify a manifest's signature, version, expiry, snapshot)
  versus only reading and parsing the same JSON files;
- download_verified (bounded, hashed, atomic) versus a plain file copy;
- publish (hash, copy, sign, write) time and the manifest's size.

Example: python -m tools.bench.release --size-mb 32 --packs 6 --deltas 5 --runs 200
Pass --packs-dir to publish a real pack directory (with index.json) instead of fake ones.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path


def _fake_packs(root: Path, version: int, n: int, size: int) -> Path:
    import hashlib
    d = root / f"packs-{version}"
    d.mkdir()
    packs = []
    for i in range(n):
        name = f"R{i}-full"
        data = os.urandom(size if i == 0 else 4096)
        (d / f"{name}.wire").write_bytes(data)
        packs.append({"name": name, "region": "CN", "tier": "full", "sqlite": "-", "sqlite_bytes": 0,
                      "wire": f"{name}.wire", "wire_bytes": len(data), "wire_sha256": hashlib.sha256(data).hexdigest(),
                      "entries": 1000, "state_hash": hashlib.sha256(f"{name}{version}".encode()).hexdigest()})
    (d / "index.json").write_text(json.dumps({"format": 1, "version": version, "built_at": "x", "packs": packs}))
    return d


def _fake_deltas(root: Path, a: Path, b: Path) -> Path:
    import hashlib
    ia, ib = (json.loads((p / "index.json").read_text()) for p in (a, b))
    d = root / f"delta-{ia['version']}-{ib['version']}"
    d.mkdir()
    out = []
    for pa, pb in zip(ia["packs"], ib["packs"]):
        data = os.urandom(2048)
        (d / f"{pa['name']}.delta").write_bytes(data)
        out.append({"name": pa["name"], "file": f"{pa['name']}.delta", "bytes": len(data),
                    "sha256": hashlib.sha256(data).hexdigest(), "upserts": 1, "removals": 0,
                    "from_state_hash": pa["state_hash"], "to_state_hash": pb["state_hash"]})
    (d / "index.json").write_text(json.dumps({"format": 1, "from_version": ia["version"],
                                              "to_version": ib["version"], "deltas": out}))
    return d


def _fake_model(root: Path) -> Path:
    d = root / "model"
    d.mkdir()
    (d / "model.tflite").write_bytes(os.urandom(200_000))
    (d / "contract.json").write_text(json.dumps({"inputs": [{"name": f"f{i}", "dtype": "float32", "shape": [1]}
                                                            for i in range(30)]}))
    (d / "test_vectors.json").write_text(json.dumps([{"inputs": {f"f{i}": i / 7 for i in range(30)},
                                                      "expected": {"risk": j / 13}} for j in range(50)]))
    return d


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=float, default=32.0, help="size of the big pack artefact (MB)")
    ap.add_argument("--packs", type=int, default=6, help="packs per release (fake)")
    ap.add_argument("--deltas", type=int, default=5, help="delta windows listed per pack (fake)")
    ap.add_argument("--runs", type=int, default=200, help="client refreshes to time")
    ap.add_argument("--rotations", type=int, default=3, help="root versions beyond 1 the client walks")
    ap.add_argument("--packs-dir", type=Path, help="publish this real pack dir instead of fake packs")
    a = ap.parse_args(argv)

    from callmark.updater import DirFetcher, TrustedState, Updater, download_verified
    import publisher as R

    tmp = Path(tempfile.mkdtemp(prefix="bench-release-"))
    try:
        keys, ex = tmp / "keys", tmp / "exports"
        R.init_keys(keys, threshold=2, roots=3)
        for _ in range(a.rotations):
            R.rotate_keys(keys, online=True, root=True)
        size = int(a.size_mb * 1e6)
        dirs = [_fake_packs(tmp, v, a.packs, size if v == a.deltas + 1 else 4096) for v in range(1, a.deltas + 2)]
        deltas = [_fake_deltas(tmp, d, dirs[-1]) for d in dirs[:-1]]
        pack_dir = a.packs_dir or dirs[-1]
        t0 = time.perf_counter()
        R.publish_release(ex, pack_dir, [] if a.packs_dir else deltas, _fake_model(tmp), "beta", keys)
        t_pub = time.perf_counter() - t0
        man_bytes = (ex / "channels/beta/manifest.json").stat().st_size
        root_file = ex / "root" / "1.root.json"

        # client refresh vs plain read+parse of the same files
        t0 = time.perf_counter()
        for _ in range(a.runs):
            u = Updater(TrustedState.bootstrap(root_file), DirFetcher(ex), "beta")
            u.refresh()
        t_ref = (time.perf_counter() - t0) / a.runs
        files = [root_file, *(ex / "root" / f"{v}.root.json" for v in range(2, a.rotations + 2)),
                 ex / "channels/beta/manifest.json"]
        t0 = time.perf_counter()
        for _ in range(a.runs):
            for f in files:
                json.loads(f.read_bytes())
        t_plain = (time.perf_counter() - t0) / a.runs

        # bounded hashed download vs plain copy of the big artefact
        big = max(u.manifest.artefacts(), key=lambda e: e.length)
        src = ex / big.path
        shutil.copyfile(src, tmp / "warm")
        t0 = time.perf_counter()
        shutil.copyfile(src, tmp / "plain")
        t_copy = time.perf_counter() - t0
        t0 = time.perf_counter()
        with open(src, "rb") as f:
            download_verified(iter(lambda: f.read(1 << 16), b""), big, tmp / "verified")
        t_dl = time.perf_counter() - t0

        n_art = len(u.manifest.artefacts())
        print(f"release: {a.packs} packs, {len(u.manifest.deltas)} deltas, {n_art} artefacts; "
              f"root chain of {a.rotations + 1}; manifest {man_bytes:,} bytes")
        print(f"publish: {t_pub:.2f} s for {sum(e.length for e in u.manifest.artefacts()) / 1e6:.1f} MB")
        print(f"client refresh: {t_ref * 1e3:.2f} ms (plain read+parse {t_plain * 1e3:.2f} ms, "
              f"ratio {t_ref / t_plain:.1f}x)")
        print(f"download_verified {big.length / 1e6:.1f} MB: {t_dl * 1e3:.0f} ms = {big.length / t_dl / 1e6:.0f} MB/s "
              f"(plain copy {t_copy * 1e3:.0f} ms, ratio {t_dl / t_copy:.1f}x)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
