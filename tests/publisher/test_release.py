"""Keys, publish layout, staged rollout, promote, rollback, retention and the CLI."""
from __future__ import annotations

import hashlib
import json
import stat
from datetime import timedelta

import pytest
from click.testing import CliRunner

from callmark.manifest import Root, device_bucket, in_rollout, keyid_of, utcnow
from callmark.updater import verify_exports
from callmark.manifest_errors import KeyStoreError, ReleaseError
from tests.publisher.test_release_fakes import World, fake_delta_dir, fake_model_dir, fake_pack_dir
from tools.commands.release import COMMANDS
import publisher as R


@pytest.fixture
def world(tmp_path):
    return World(tmp_path)


def test_keys_init_writes_private_keys_0600_and_a_threshold_root(tmp_path):
    root = R.init_keys(tmp_path / "k", threshold=2, roots=3)
    pems = sorted((tmp_path / "k").glob("*.pem"))
    assert len(pems) == 4 and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in pems)
    assert root.roles["root"].threshold == 2 and len(root.roles["root"].keyids) == 3
    assert len(root.roles["manifest"].keyids) == 1
    env = json.loads((tmp_path / "k" / "root" / "1.root.json").read_text())
    assert Root.from_dict(env["signed"]) == root and len(env["signatures"]) == 3
    assert root.expires - utcnow() > timedelta(days=364)
    with pytest.raises(KeyStoreError, match="already holds keys"):
        R.init_keys(tmp_path / "k")
    with pytest.raises(KeyStoreError, match="threshold"):
        R.init_keys(tmp_path / "k2", threshold=4, roots=3)


def test_rotation_needs_the_root_threshold(tmp_path):
    R.init_keys(tmp_path / "k", threshold=2, roots=3)
    store = R.KeyStore(tmp_path / "k")
    store.retire([keyid_of(k) for k in store.role_keys("root")[:2]])   # only 1 of 3 root keys left
    with pytest.raises(KeyStoreError, match="root private keys"):
        R.rotate_keys(tmp_path / "k")


def test_publish_layout_is_content_addressed_and_matches_the_interface(world):
    m = world.m2
    env = world.manifest_env()
    s = env["signed"]
    for key in ("type", "spec_version", "version", "channel", "expires", "min_client_format", "packs", "deltas",
                "model", "hints", "snapshot"):
        assert key in s
    assert s["type"] == "manifest" and s["version"] == 2 and s["channel"] == "beta"
    assert set(env) == {"signed", "signatures"} and set(env["signatures"][0]) == {"keyid", "sig"}
    for a in m.artefacts():
        data = (world.ex / a.path).read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        assert a.path.startswith(f"artefacts/{sha[:16]}-") and a.sha256 == sha and a.length == len(data)
    idx = json.loads((world.p2 / "index.json").read_text())["packs"][0]
    pack = s["packs"][0]
    assert (pack["state_hash"], pack["version"], pack["entries"]) == (idx["state_hash"], 2, idx["entries"])
    assert s["model"]["contract"] == json.loads((world.mb / "contract.json").read_text())
    assert s["model"]["test_vectors"] == json.loads((world.mb / "test_vectors.json").read_text())
    v1_state = json.loads((world.p1 / "index.json").read_text())["packs"][0]["state_hash"]
    assert s["deltas"][0]["from_state_hash"] == v1_state
    chan = world.ex / "channels" / "beta"
    assert (chan / "2.manifest.json").read_bytes() == (chan / "manifest.json").read_bytes()
    root_json = json.loads((world.ex / "root.json").read_text())
    assert root_json == json.loads((world.keys / "root" / "1.root.json").read_text())
    assert [h["version"] for h in R.history(world.ex)] == [1, 2]
    expires = m.expires - utcnow()
    assert timedelta(days=6.9) < expires <= timedelta(days=7)


def test_publish_rejects_bad_inputs_clearly(world, tmp_path):
    p3 = fake_pack_dir(tmp_path, 3)
    (p3 / "CN-full-v3.pack.zst").write_bytes(b"not what the index says")
    with pytest.raises(ReleaseError, match="does not match|rebuild the pack"):
        R.publish_release(world.ex, p3, [], None, "beta", world.keys)
    with pytest.raises(ReleaseError, match="not found"):
        R.publish_release(world.ex, tmp_path / "nope", [], None, "beta", world.keys)
    with pytest.raises(ReleaseError, match="versions only go up"):
        R.publish_release(world.ex, fake_pack_dir(tmp_path, 4), [], None, "beta", world.keys, version=2)
    with pytest.raises(ReleaseError, match="lacks model.tflite"):
        R.publish_release(world.ex, fake_pack_dir(tmp_path, 5), [], tmp_path, "beta", world.keys)
    assert R.channel_versions(world.ex, "beta") == [1, 2]    # nothing half-published
    assert verify_exports(world.ex).ok


def test_publish_refuses_packs_that_would_take_phones_back(world, tmp_path):
    before = sorted(p.name for p in (world.ex / "artefacts").iterdir())
    with pytest.raises(ReleaseError, match="pack CN-full v1 is older than beta's v2: publish a newer build"):
        R.publish_release(world.ex, fake_pack_dir(tmp_path, 1, tag="other"), [], None, "beta", world.keys)
    with pytest.raises(ReleaseError, match="pack CN-full v2 differs from the v2 beta already serves"):
        R.publish_release(world.ex, fake_pack_dir(tmp_path, 2, tag="other"), [], None, "beta", world.keys)
    assert sorted(p.name for p in (world.ex / "artefacts").iterdir()) == before   # nothing written
    assert R.channel_versions(world.ex, "beta") == [1, 2]
    m = R.publish_release(world.ex, world.p2, [], None, "beta", world.keys)    # the same pack again: fine
    assert [p.version for p in m.packs] == [2]


def test_device_buckets_are_stable_uniform_and_nested(world):
    devices = [f"device-{i}" for i in range(5000)]
    salt = world.m2.model.sha256
    b = [device_bucket(d, salt) for d in devices]
    assert b == [device_bucket(d, salt) for d in devices]
    share = sum(in_rollout(d, 20, salt) for d in devices) / len(devices)
    assert 0.17 < share < 0.23
    ten = {d for d in devices if in_rollout(d, 10, salt)}
    assert ten <= {d for d in devices if in_rollout(d, 50, salt)}
    other = {d for d in devices if in_rollout(d, 10, "another-model")}
    assert len(ten & other) < 0.3 * len(ten)                     # another model -> another cohort


def test_staged_rollout_gives_new_model_to_p_percent(world, tmp_path):
    mc = fake_model_dir(tmp_path, "c")
    m = R.publish_release(world.ex, fake_pack_dir(tmp_path, 3), [], mc, "beta", world.keys, rollout_percent=20)
    client = world.client().refresh()                         # the signed manifest, as a phone sees it
    assert client.model.rollout_percent == 20 and client.model.fallback.sha256 == world.m2.model.sha256
    devices = [f"d{i}" for i in range(4000)]
    got = [client.model_for_device(d).sha256 for d in devices]
    new_share = got.count(m.model.sha256) / len(devices)
    assert 0.17 < new_share < 0.23 and set(got) == {m.model.sha256, world.m2.model.sha256}
    early = {d for d, s in zip(devices, got) if s == m.model.sha256}
    R.set_rollout(world.ex, world.keys, "beta", 60)
    wider = world.client().refresh()
    assert all(wider.model_for_device(d).sha256 == m.model.sha256 for d in early)
    assert wider.model.fallback == client.model.fallback
    # a pack-only release keeps the model and its rollout
    again = R.publish_release(world.ex, fake_pack_dir(tmp_path, 4), [], None, "beta", world.keys)
    assert again.model.rollout_percent == 60 and again.model.sha256 == m.model.sha256


def test_promote_then_rollback_is_a_higher_version_with_older_artefacts(world, tmp_path):
    R.promote(world.ex, world.keys, "beta", "stable")
    bad = R.publish_release(world.ex, fake_pack_dir(tmp_path, 3), [], fake_model_dir(tmp_path, "bad"), "beta",
                            world.keys)
    s2 = R.promote(world.ex, world.keys, "beta", "stable", rollout_percent=10)
    assert s2.version == 2 and s2.model.sha256 == bad.model.sha256 and s2.model.rollout_percent == 10
    phone = world.client(channel="stable")
    assert phone.refresh().version == 2
    rb = R.rollback(world.ex, world.keys, "stable")
    assert rb.version == 3 and rb.model.sha256 == world.m2.model.sha256
    assert [p.sha256 for p in rb.packs] == [p.sha256 for p in world.m2.packs]
    assert phone.refresh().version == 3                      # accepted: it is not a version rollback
    actions = [(h["action"], h["channel"], h["version"]) for h in R.history(world.ex)]
    assert actions[-3:] == [("publish", "beta", 3), ("promote", "stable", 2), ("rollback", "stable", 3)]
    assert R.history(world.ex, "stable")[-1]["to_version"] == 1
    with pytest.raises(ReleaseError, match="below the current"):
        R.rollback(world.ex, world.keys, "stable", to_version=3)


def test_gc_keeps_live_and_window_artefacts_only(world, tmp_path):
    R.promote(world.ex, world.keys, "beta", "stable")            # stable stays on beta v2's artefacts
    prev = world.p2
    for v in range(3, 7):
        p = fake_pack_dir(tmp_path, v)
        R.publish_release(world.ex, p, [fake_delta_dir(tmp_path, prev, p)], None, "beta", world.keys)
        prev = p
    before = set((world.ex / "artefacts").iterdir())
    dry = R.collect_garbage(world.ex, window_versions=2, window_days=0, dry_run=True)
    assert set((world.ex / "artefacts").iterdir()) == before and dry["deleted"]
    r = R.collect_garbage(world.ex, window_versions=2, window_days=0)
    assert r["deleted"] == dry["deleted"]
    left = {f"artefacts/{p.name}" for p in (world.ex / "artefacts").iterdir()}
    for ch, v in (("beta", 6), ("beta", 5), ("stable", 1), ("beta", 2)):
        assert {a.path for a in R.load_manifest(world.ex, ch, v).artefacts()} <= left
    assert not {a.path for a in world.m1.packs} & left            # pack v1 is outside the window
    assert {a.path for a in world.m2.packs} <= left               # beta's window dropped it, stable is live
    assert world.m2.model.path in left                            # the model is still referenced
    assert verify_exports(world.ex).ok
    with pytest.raises(ReleaseError, match="collected by gc"):
        R.rollback(world.ex, world.keys, "beta", to_version=1)
    recent = R.collect_garbage(world.ex, window_versions=1, window_days=30)
    assert recent["deleted"] == []                                # all versions are recent


def run(args, **kw):
    import click

    @click.group()
    def cli():
        pass
    for name, cmd in COMMANDS.items():
        cli.add_command(cmd, name)
    return CliRunner().invoke(cli, args, catch_exceptions=False, **kw)


def test_cli_end_to_end(tmp_path):
    keys, ex = str(tmp_path / "keys"), str(tmp_path / "ex")
    r = run(["keys", "init", "--dir", keys, "--threshold", "2", "--roots", "3"])
    assert r.exit_code == 0 and "2-of-3" in r.output
    p1 = fake_pack_dir(tmp_path, 1)
    r = run(["publish", "--exports", ex, "--keys", keys, "--packs", str(p1), "--model",
             str(fake_model_dir(tmp_path, "a")), "--channel", "beta"])
    assert r.exit_code == 0 and "published beta v1" in r.output
    p2 = fake_pack_dir(tmp_path, 2)
    r = run(["publish", "--exports", ex, "--keys", keys, "--packs", str(p2), "--delta",
             str(fake_delta_dir(tmp_path, p1, p2)), "--channel", "beta", "--percent", "30"])
    assert r.exit_code == 0, r.output
    assert run(["promote", "--exports", ex, "--keys", keys, "--percent", "5"]).exit_code == 0
    r = run(["rollout", "--exports", ex, "--keys", keys, "--channel", "stable", "--percent", "50"])
    assert r.exit_code == 0 and "rolled out stable v2" in r.output
    assert run(["keys", "rotate", "--dir", keys, "--root", "--exports", ex]).exit_code == 0
    assert run(["rollback", "--exports", ex, "--keys", keys, "--channel", "beta"]).exit_code == 0
    r = run(["verify", ex])
    assert r.exit_code == 0 and "root v2" in r.output and "OK" in r.output
    r = run(["history", "--exports", ex, "--json"])
    assert [json.loads(x)["action"] for x in r.output.splitlines()] == [
        "publish", "publish", "promote", "rollout", "resign", "resign", "rollback"]
    lines = run(["history", "--exports", ex, "--channel", "stable"]).output.splitlines()
    assert "{" not in "".join(lines) and len(lines) == 3
    assert " promote  stable v1    packs CN-full v2; model " in lines[0] and "from beta v2" in lines[0]
    assert " model " in lines[0] and "at 5 %" in lines[0] and "at 50 %" in lines[1]
    r = run(["promote", "--exports", ex, "--keys", keys, "--from", "stable", "--to", "canary", "--percent", "10"])
    assert r.exit_code == 0 and "note: --percent 10 changed nothing" not in r.output  # stable has a model
    r = run(["history", "--exports", ex, "--channel", "nightly"])  # a typo or an empty channel says so
    assert r.exit_code == 0 and "no release records for channel nightly" in r.output
    assert "(channels: beta, canary, stable)" in r.output
    r = run(["publish", "--exports", ex, "--keys", keys, "--packs", str(fake_pack_dir(tmp_path, 3)),
             "--channel", "packs-only"])
    assert r.exit_code == 0 and "no model" in r.output
    r = run(["promote", "--exports", ex, "--keys", keys, "--from", "packs-only", "--to", "packs-stable",
             "--percent", "10"])
    assert r.exit_code == 0 and "note: --percent 10 changed nothing: packs-only has no model" in r.output
    # tamper with one artefact: verify names the problem and exits 1
    art = next((tmp_path / "ex" / "artefacts").glob("*.pack.zst"))
    art.write_bytes(art.read_bytes()[:-1])
    r = run(["verify", ex])
    assert r.exit_code == 1 and "TamperedArtefactError" in r.output and art.name in r.output
    # bad input: a clear one-line error, no traceback
    r = run(["publish", "--exports", ex, "--keys", str(tmp_path / "nokeys"), "--packs", str(p2)])
    assert r.exit_code == 1 and "keys init" in r.output and "Traceback" not in r.output


def test_security_doc_names_only_real_tests():
    import re
    from pathlib import Path
    here = Path(__file__).resolve().parents[2]
    doc = (here / "docs" / "security.md").read_text()
    named = set(re.findall(r"`(test_\w+)`", doc))
    code = "".join(p.read_text() for p in here.glob("tests/**/test_*.py"))
    defined = set(re.findall(r"^def (test_\w+)", code, re.M))
    assert len(named) >= 15 and named <= defined, named - defined


def test_model_only_release_keeps_packs_and_force_init_keeps_other_files(world, tmp_path):
    m = R.publish_release(world.ex, None, [], fake_model_dir(tmp_path, "c"), "beta", world.keys)
    assert m.packs == world.m2.packs and m.deltas == world.m2.deltas
    assert m.model.fallback.sha256 == world.m2.model.sha256
    with pytest.raises(ReleaseError, match="pass the pack directory"):
        R.publish_release(world.ex, None, [], None, "empty", world.keys)
    (world.keys / "notes.txt").write_text("mine")
    old = set(R.KeyStore(world.keys).private_keys())
    R.init_keys(world.keys, threshold=1, roots=1, force=True)
    assert (world.keys / "notes.txt").read_text() == "mine"
    assert not old & set(R.KeyStore(world.keys).private_keys())
    assert R.KeyStore(world.keys).root_versions() == [1]


def test_verify_names_stale_current_manifest_and_foreign_roots(world, tmp_path):
    world.serve(world.manifest_env(version=1))                    # manifest.json rolled back on the server
    rep = verify_exports(world.ex)
    assert not rep.ok and any(p.startswith("RollbackError") and "2.manifest.json" in p for p in rep.problems)
    world.serve(world.manifest_env(version=2))
    assert verify_exports(world.ex).ok
    R.init_keys(tmp_path / "other")                                # someone else's root of trust
    rep = verify_exports(world.ex, tmp_path / "other" / "root" / "1.root.json")
    kinds = [p.split(":")[0] for p in rep.problems]
    assert kinds == ["MixAndMatchError", "UntrustedKeyError"], rep.problems
    rep = verify_exports(world.ex, tmp_path / "missing.json")
    assert not rep.ok and "trusted root" in rep.problems[0]


def test_publish_with_a_stale_keys_copy_is_refused(world, tmp_path):
    import shutil
    stale = tmp_path / "stale-keys"
    shutil.copytree(world.keys, stale)
    R.rotate_keys(world.keys)
    R.sync_keys(world.ex, world.keys)
    with pytest.raises(ReleaseError, match="current keys directory"):
        R.publish_release(world.ex, fake_pack_dir(tmp_path, 3), [], None, "beta", stale)
    assert verify_exports(world.ex).ok
