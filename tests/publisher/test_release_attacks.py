"""Each TUF attack against a real published exports/ tree, seen by the reference client verifier.

docs/security.md maps every attack class to the test here that shows it is stopped.
"""
from __future__ import annotations

import itertools
import json
import os
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from callmark.manifest import Manifest, sign_envelope, snapshot_hash, utcnow
from callmark.updater import DirFetcher, TrustedState, Updater, download_verified, verify_exports
from callmark.manifest_errors import (
    BadSignatureError, ClientTooOldError, EndlessDataError, FreezeError, MixAndMatchError, ReleaseError,
    RollbackError, TamperedArtefactError, ThresholdError, UntrustedKeyError,
)
from tests.publisher.test_release_fakes import World, fake_delta_dir, fake_pack_dir
import publisher as R


@pytest.fixture
def world(tmp_path):
    return World(tmp_path)


def online_key(world) -> Ed25519PrivateKey:
    return R.KeyStore(world.keys).online_key()


def test_honest_client_updates_and_gets_exact_bytes(world, tmp_path):
    u = world.client()
    m = u.refresh()
    assert m.version == 2 and m.channel == "beta"
    pack = m.pack("CN-full")
    out = u.fetch_artefact(pack, tmp_path / "pack.bin")
    assert out.read_bytes() == (world.p2 / "CN-full-v2.pack.zst").read_bytes()
    v1_state = json.loads((world.p1 / "index.json").read_text())["packs"][0]["state_hash"]
    delta = u.delta_for("CN-full", v1_state)
    assert delta is not None and delta.to_state_hash == pack.state_hash
    u.check_delta(delta, v1_state, pack.state_hash)
    assert verify_exports(world.ex).ok


def test_tampered_artefact_is_rejected(world, tmp_path):
    m = world.client().refresh()
    path = world.ex / m.pack("CN-full").path
    data = bytearray(path.read_bytes())
    data[100] ^= 1
    path.write_bytes(bytes(data))
    u = world.client()
    u.refresh()
    with pytest.raises(TamperedArtefactError):
        u.fetch_artefact(m.pack("CN-full"), tmp_path / "x")
    assert not (tmp_path / "x").exists()
    rep = verify_exports(world.ex)
    assert not rep.ok and any(p.startswith("TamperedArtefactError") for p in rep.problems)


def test_manifest_edited_after_signing_is_rejected(world):
    env = world.manifest_env()
    env["signed"]["packs"][0]["length"] += 1
    world.serve(env)
    with pytest.raises(BadSignatureError):
        world.client().refresh()


def test_manifest_signed_by_unknown_key_is_rejected(world):
    env = world.manifest_env()
    env["signed"]["version"] = 99
    world.serve(sign_envelope(env["signed"], [Ed25519PrivateKey.generate()]))
    with pytest.raises(UntrustedKeyError):
        world.client().refresh()


def test_retired_online_key_is_untrusted_after_rotation(world):
    old_online = online_key(world)
    R.rotate_keys(world.keys, online=True)
    R.sync_keys(world.ex, world.keys)          # publishes root v2, re-signs beta with the new key
    env = world.manifest_env()
    env["signed"]["version"] += 1
    world.serve(sign_envelope(env["signed"], [old_online]))
    with pytest.raises(UntrustedKeyError):
        world.client().refresh()


def test_root_needs_threshold_of_old_root_keys(world):
    store = R.KeyStore(world.keys)
    old = store.root()
    new = R.make_root(2, store.role_keys("root"), 2, Ed25519PrivateKey.generate(), old.expires)
    one_key = store.role_keys("root")[:1]
    # one root key signing three times still counts once (threshold is 2 distinct keys)
    env = sign_envelope(new.to_dict(), one_key)
    env["signatures"] = env["signatures"] * 3
    (world.ex / "root" / "2.root.json").write_text(json.dumps(env))
    with pytest.raises(ThresholdError):
        world.client().refresh_root()


def test_manifest_rollback_is_rejected_even_after_restart(world, tmp_path):
    state_dir = tmp_path / "phone"
    assert world.client(state_dir).refresh().version == 2
    world.serve(world.manifest_env(version=1))   # a validly signed, unexpired, older manifest
    u = Updater(TrustedState.open(state_dir), DirFetcher(world.ex), "beta")   # the phone restarted
    with pytest.raises(RollbackError):
        u.refresh()
    assert world.client().refresh().version == 1   # a fresh client (no memory) cannot tell


def test_root_rollback_is_rejected(world):
    R.rotate_keys(world.keys, online=False)       # root v2 exists
    R.sync_keys(world.ex, world.keys)
    v1 = (world.ex / "root" / "1.root.json").read_text()
    (world.ex / "root" / "3.root.json").write_text(v1)   # attacker replays root v1 as "v3"
    u = world.client()
    with pytest.raises(RollbackError):
        u.refresh_root()
    assert u.state.root.version == 2


def test_expired_manifest_is_rejected(world):
    later = utcnow() + timedelta(days=R.MANIFEST_EXPIRES_DAYS, hours=1)
    with pytest.raises(FreezeError):
        world.client(now=lambda: later).refresh()
    # after the publisher re-signs, the same artefacts are accepted again
    R.resign(world.ex, world.keys, now=later)
    assert world.client(now=lambda: later).refresh().version == 3


def test_expired_root_is_rejected(world):
    later = utcnow() + timedelta(days=R.ROOT_EXPIRES_DAYS + 1)
    with pytest.raises(FreezeError, match="root"):
        world.client(now=lambda: later).refresh_root()


def test_artefact_from_another_release_is_rejected(world, tmp_path):
    u = world.client()
    u.refresh()
    old_pack = Manifest.from_dict(world.manifest_env(version=1)["signed"]).pack("CN-full")
    with pytest.raises(MixAndMatchError):
        u.fetch_artefact(old_pack, tmp_path / "old")      # genuine file, wrong release


def test_pack_or_delta_state_from_another_release_is_rejected(world, tmp_path):
    u = world.client()
    m = u.refresh()
    other = fake_pack_dir(tmp_path, 2, tag="-other")       # same version number, other data
    other_state = json.loads((other / "index.json").read_text())["packs"][0]["state_hash"]
    with pytest.raises(MixAndMatchError):
        u.check_pack_state("CN-full", other_state)
    assert u.delta_for("CN-full", other_state) is None    # -> client fetches the full pack
    with pytest.raises(MixAndMatchError):
        u.check_delta(m.deltas[0], other_state)
    v1_state = m.deltas[0].from_state_hash
    with pytest.raises(MixAndMatchError):
        u.check_delta(m.deltas[0], v1_state, after_state=other_state)


def test_spliced_manifest_is_rejected_even_if_signed(world):
    v1, v2 = world.manifest_env(version=1)["signed"], world.manifest_env(version=2)["signed"]
    spliced = dict(v2, packs=v1["packs"], version=3)          # v1 packs with v2 deltas and snapshot
    world.serve(sign_envelope(spliced, [online_key(world)]))
    with pytest.raises(MixAndMatchError):
        world.client().refresh()
    spliced["snapshot"] = snapshot_hash(spliced["packs"], spliced["deltas"], spliced["model"])
    world.serve(sign_envelope(spliced, [online_key(world)]))
    with pytest.raises(MixAndMatchError, match="delta"):       # delta no longer ends at the pack
        world.client().refresh()


def test_publisher_refuses_delta_from_another_build(world, tmp_path):
    p3 = fake_pack_dir(tmp_path, 3)
    p3_other = fake_pack_dir(tmp_path, 3, tag="-other")
    bad = fake_delta_dir(tmp_path, world.p2, p3_other)
    with pytest.raises(ReleaseError, match="deltas must be built against"):
        R.publish_release(world.ex, p3, [bad], None, "beta", world.keys)


def test_manifest_for_another_channel_is_rejected(world):
    R.promote(world.ex, world.keys, "beta", "stable")
    world.serve(world.manifest_env("stable"), "beta")
    with pytest.raises(MixAndMatchError, match="channel"):
        world.client().refresh()


def test_endless_artefact_download_stops(world, tmp_path):
    u = world.client()
    entry = u.refresh().pack("CN-full")
    good = (world.ex / entry.path).read_bytes()
    endless = itertools.chain([good], itertools.repeat(b"\0" * 4096))   # never ends
    with pytest.raises(EndlessDataError):
        download_verified(endless, entry, tmp_path / "p")
    assert not (tmp_path / "p").exists() and not (tmp_path / "p.part").exists()


def test_endless_metadata_is_rejected(world):
    big = b"{" + b" " * (600 * 1024) + b"}"
    (world.ex / "root" / "2.root.json").write_bytes(big)
    with pytest.raises(EndlessDataError):
        world.client().refresh_root()


def test_client_too_old_is_told_to_update(world):
    env = world.manifest_env()
    signed = dict(env["signed"], version=3, min_client_format=2)
    world.serve(sign_envelope(signed, [online_key(world)]))
    with pytest.raises(ClientTooOldError):
        world.client().refresh()


def test_root_key_rotation_without_reinstall(world, tmp_path):
    state_dir = tmp_path / "phone"
    assert world.client(state_dir).refresh().version == 2       # app ships root v1
    R.rotate_keys(world.keys, online=True, root=True)            # v2: all-new root keys + online key
    R.rotate_keys(world.keys, online=True, root=True, threshold=1, roots=2)   # v3: again
    m3 = R.publish_release(world.ex, fake_pack_dir(tmp_path, 3), [], None, "beta", world.keys)
    assert sorted(os.listdir(world.ex / "root")) == ["1.root.json", "2.root.json", "3.root.json"]
    u = Updater(TrustedState.open(state_dir), DirFetcher(world.ex), "beta")
    m = u.refresh()
    assert u.state.root.version == 3 and m.version == m3.version
    assert m.model.sha256 == world.m2.model.sha256              # model carried over
    # the new trust survives a restart, and none of the original root keys is needed any more
    assert TrustedState.open(state_dir).root.version == 3
    assert not (set(R.KeyStore(world.keys).private_keys()) & set(world.client().state.root.roles["root"].keyids))
    assert verify_exports(world.ex).ok


def test_root_not_signed_by_the_old_root_is_rejected(world):
    """An attacker's self-signed root v2 (their own root + online keys) does not chain to v1."""
    evil = [Ed25519PrivateKey.generate() for _ in range(2)]
    store = R.KeyStore(world.keys)
    new = R.make_root(2, evil, 2, Ed25519PrivateKey.generate(), store.root().expires)
    (world.ex / "root" / "2.root.json").write_text(json.dumps(sign_envelope(new.to_dict(), evil)))
    with pytest.raises(UntrustedKeyError, match="by root v1 keys"):
        world.client().refresh_root()


def test_new_root_must_be_signed_by_its_own_keys(world):
    """Old keys alone cannot hand trust to new keys that never signed (proves the new key holders exist)."""
    store = R.KeyStore(world.keys)
    new_keys = [Ed25519PrivateKey.generate() for _ in range(3)]
    new = R.make_root(2, new_keys, 2, Ed25519PrivateKey.generate(), store.root().expires)
    env = sign_envelope(new.to_dict(), store.role_keys("root") + new_keys[:1])
    (world.ex / "root" / "2.root.json").write_text(json.dumps(env))
    with pytest.raises(ThresholdError, match="its own keys"):
        world.client().refresh_root()


@pytest.fixture
def http_exports(world):
    """Serve world.ex over HTTP; /artefacts/endless streams bytes forever."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    class Handler(SimpleHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            if self.path.endswith("endless"):
                self.send_response(200)
                self.end_headers()
                try:
                    while True:
                        self.wfile.write(b"\0" * 65536)
                except (BrokenPipeError, ConnectionResetError):
                    return
            return super().do_GET()

    srv = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(world.ex)))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_http_client_verifies_and_bounds_downloads(world, http_exports, tmp_path):
    from dataclasses import replace

    from callmark.updater import HttpFetcher
    u = Updater(TrustedState.bootstrap(world.ex / "root" / "1.root.json"), HttpFetcher(http_exports), "beta")
    m = u.refresh()
    assert m.version == 2
    got = u.fetch_artefact(m.model, tmp_path / "m.tflite")
    assert got.read_bytes() == (world.mb / "model.tflite").read_bytes()
    endless = replace(m.model, path="artefacts/endless")
    with pytest.raises(EndlessDataError):
        download_verified(u.fetcher.iter(endless.path), endless, tmp_path / "e")


def test_fast_forward_is_recovered_by_rotating_the_online_key(world, tmp_path):
    import shutil
    mirror = tmp_path / "mirror"
    shutil.copytree(world.ex, mirror)
    signed = dict(world.manifest_env()["signed"], version=10**6)       # stolen online key, huge version
    (mirror / "channels/beta/manifest.json").write_text(json.dumps(sign_envelope(signed, [online_key(world)])))
    state_dir = tmp_path / "phone"
    phone = Updater(TrustedState.bootstrap(world.ex / "root/1.root.json", state_dir), DirFetcher(mirror), "beta")
    assert phone.refresh().version == 10**6
    with pytest.raises(RollbackError):                                  # the real releases look old now
        Updater(TrustedState.open(state_dir), DirFetcher(world.ex), "beta").refresh()
    R.rotate_keys(world.keys, online=True)
    R.sync_keys(world.ex, world.keys)                                   # root v2 + beta re-signed as v3
    assert Updater(TrustedState.open(state_dir), DirFetcher(world.ex), "beta").refresh().version == 3


def test_publisher_will_not_build_on_a_forged_manifest(world, tmp_path):
    env = world.manifest_env()
    env["signed"]["model"]["rollout_percent"] = 1
    world.serve(env)
    with pytest.raises(ReleaseError, match="does not verify"):
        R.publish_release(world.ex, fake_pack_dir(tmp_path, 3), [], None, "beta", world.keys)
    with pytest.raises(ReleaseError, match="does not verify"):
        R.promote(world.ex, world.keys, "beta", "stable")
