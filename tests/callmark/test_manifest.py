"""callmark.manifest on its own: canonical JSON, metadata objects, signatures, rollout, bounded downloads."""
from __future__ import annotations

import hashlib
import itertools
import json
import os
from datetime import datetime, timezone

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from callmark.manifest import (
    ArtefactEntry, Manifest, ModelEntry, PackEntry, Role, Root, canonical_json, device_bucket, in_rollout,
    keyid_of, public_key_dict, sign_envelope, snapshot_hash, verify_envelope,
)
from callmark.updater import TrustedState, download_verified, verify_file
from callmark.manifest_errors import (
    BadSignatureError, EndlessDataError, MetadataFormatError, MixAndMatchError, TamperedArtefactError,
    ThresholdError, UntrustedKeyError,
)

LATER = datetime(2099, 1, 1, tzinfo=timezone.utc)


def make_root(n=3, m=2, version=1):
    roots = [Ed25519PrivateKey.generate() for _ in range(n)]
    online = Ed25519PrivateKey.generate()
    keys = {keyid_of(k): public_key_dict(k) for k in [*roots, online]}
    root = Root(version, LATER, keys, {"root": Role(tuple(keyid_of(k) for k in roots), m),
                                       "manifest": Role((keyid_of(online),), 1)})
    return root, roots, online


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def make_manifest(**kw) -> Manifest:
    s = sha(b"state")
    pack = PackEntry("artefacts/aa-CN-full.zst", 10, sha(b"p"), "CN-full", "CN", "full", 3, 7, s)
    model = ModelEntry("artefacts/bb-model.tflite", 5, sha(b"m"), "model.tflite", {"inputs": []},
                       [{"in": 1, "out": 0.5}], 100, sha(b"m"))
    fields = dict(version=1, channel="beta", expires=LATER, packs=(pack,), deltas=(), model=model)
    fields.update(kw)
    m = Manifest(**fields)
    return Manifest.from_dict(m.to_dict())


@pytest.mark.parametrize("value,text", [
    (1.0, "1"), (0.1, "0.1"), (1e21, "1e+21"), (1e-7, "1e-7"), (1e-6, "0.000001"), (-2.5, "-2.5"),
    (123456789012345680000.0, "123456789012345680000"), (5e-324, "5e-324"), (0.0, "0"), (100, "100"),
])
def test_canonical_numbers_follow_rfc8785(value, text):
    assert canonical_json(value) == text.encode()


def test_canonical_json_sorts_keys_by_utf16_and_has_no_whitespace():
    doc = {"b": [1, None, True], "a": "é\n", "\ue000": 1, "\U0001F600": 2}
    out = canonical_json(doc)
    assert out == '{"a":"é\\n","b":[1,null,true],"\U0001F600":2,"\ue000":1}'.encode()
    assert json.loads(out) == doc
    for bad in (float("nan"), 2**60, {1: 2}, object()):
        with pytest.raises(MetadataFormatError):
            canonical_json(bad)


def test_root_round_trips_and_rejects_bad_shapes():
    root, _, _ = make_root()
    d = root.to_dict()
    assert Root.from_dict(json.loads(json.dumps(d))) == root
    bad = json.loads(json.dumps(d))
    bad["roles"]["root"]["threshold"] = 4
    with pytest.raises(MetadataFormatError, match="threshold"):
        Root.from_dict(bad)
    bad = json.loads(json.dumps(d))
    del bad["roles"]["manifest"]
    with pytest.raises(MetadataFormatError, match="manifest"):
        Root.from_dict(bad)
    bad = json.loads(json.dumps(d))
    kid = next(iter(bad["keys"]))
    bad["keys"][kid]["public"] = Ed25519PrivateKey.generate().public_key().public_bytes_raw().hex()
    with pytest.raises(MetadataFormatError, match="keyid"):
        Root.from_dict(bad)


def test_manifest_round_trips_and_names_the_bad_field():
    m = make_manifest()
    d = m.to_dict()
    assert Manifest.from_dict(json.loads(json.dumps(d))) == m
    m.check_consistency(d)
    for mutate, msg in [(lambda x: x.pop("version"), "missing field 'version'"),
                        (lambda x: x["packs"][0].update(path="../etc/passwd"), "relative"),
                        (lambda x: x["packs"][0].update(sha256="XYZ"), "sha256"),
                        (lambda x: x.update(expires="tomorrow"), "ISO time"),
                        (lambda x: x["model"].update(rollout_percent=120), "rollout_percent")]:
        bad = json.loads(json.dumps(d))
        mutate(bad)
        with pytest.raises(MetadataFormatError, match=msg):
            Manifest.from_dict(bad)


def test_snapshot_binds_the_artefact_list():
    m = make_manifest()
    d = m.to_dict()
    d["packs"][0]["entries"] = 8       # an entry changed but the snapshot was not recomputed
    with pytest.raises(MixAndMatchError, match="snapshot"):
        Manifest.from_dict(d).check_consistency(d)
    d["snapshot"] = snapshot_hash(d["packs"], d["deltas"], d["model"])
    Manifest.from_dict(d).check_consistency(d)


def test_signature_threshold_counts_distinct_trusted_keys():
    root, roots, online = make_root(3, 2)
    signed = {"type": "root", "x": 1}
    verify_envelope(sign_envelope(signed, roots[:2]), root, "root")
    one = sign_envelope(signed, roots[:1])
    one["signatures"] *= 2                              # the same key twice is still one key
    with pytest.raises(ThresholdError):
        verify_envelope(one, root, "root")
    with pytest.raises(UntrustedKeyError):
        verify_envelope(sign_envelope(signed, [online]), root, "root")   # online key cannot sign root
    env = sign_envelope(signed, roots)
    env["signed"]["x"] = 2
    with pytest.raises(BadSignatureError):
        verify_envelope(env, root, "root")
    with pytest.raises(MetadataFormatError):
        verify_envelope({"signed": signed}, root, "root")


def test_initial_root_must_carry_its_own_threshold(tmp_path):
    root, roots, _ = make_root(3, 2)
    (tmp_path / "r.json").write_text(json.dumps(sign_envelope(root.to_dict(), roots[:1])))
    with pytest.raises(ThresholdError):
        TrustedState.bootstrap(tmp_path / "r.json")
    (tmp_path / "r.json").write_text(json.dumps(sign_envelope(root.to_dict(), roots[1:])))
    assert TrustedState.bootstrap(tmp_path / "r.json", tmp_path / "state").root == root
    assert TrustedState.open(tmp_path / "state").root == root


def test_rollout_falls_back_outside_the_bucket():
    base = make_manifest()
    old = ModelEntry("artefacts/cc-model.tflite", 4, sha(b"old"), "model.tflite", {}, None, 100, sha(b"old"))
    from dataclasses import replace
    d = replace(base, model=replace(base.model, rollout_percent=25, fallback=old), snapshot="").to_dict()
    m = Manifest.from_dict(d)
    m.check_consistency(d)
    picks = [m.model_for_device(f"dev{i}") for i in range(2000)]
    new = sum(p.sha256 == m.model.sha256 for p in picks)
    assert 400 < new < 600 and all(p.sha256 in (m.model.sha256, old.sha256) for p in picks)
    for i in range(50):
        expect = in_rollout(f"dev{i}", 25, m.model.rollout_salt)
        assert (picks[i].sha256 == m.model.sha256) == expect
        assert (device_bucket(f"dev{i}", m.model.rollout_salt) < 2500) == expect
    assert all(in_rollout(f"dev{i}", 100, "s") for i in range(200))
    assert not any(in_rollout(f"dev{i}", 0, "s") for i in range(200))


def test_download_verified_stops_at_the_listed_length(tmp_path):
    data = os.urandom(10_000)
    e = ArtefactEntry("artefacts/x", len(data), sha(data))
    chunks = (data[i:i + 999] for i in range(0, len(data), 999))
    assert download_verified(chunks, e, tmp_path / "ok").read_bytes() == data
    pulled = []

    def endless():
        for c in itertools.chain([data], itertools.repeat(b"x" * 100)):
            pulled.append(len(c))
            yield c
    with pytest.raises(EndlessDataError):
        download_verified(endless(), e, tmp_path / "endless")
    assert len(pulled) == 2                              # read one chunk past the end, then stopped
    with pytest.raises(EndlessDataError):
        download_verified([data + b"!"], e, tmp_path / "overshoot")
    with pytest.raises(TamperedArtefactError, match="got 9999"):
        download_verified([data[:-1]], e, tmp_path / "short")
    with pytest.raises(TamperedArtefactError, match="SHA-256"):
        download_verified([bytes(len(data))], e, tmp_path / "bad")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok"]


def test_verify_file_checks_length_then_hash(tmp_path):
    data = os.urandom(100)
    e = ArtefactEntry("artefacts/x", 100, sha(data))
    (tmp_path / "f").write_bytes(data)
    verify_file(e, tmp_path / "f")
    (tmp_path / "f").write_bytes(data + b"\0")
    with pytest.raises(TamperedArtefactError, match="101 bytes"):
        verify_file(e, tmp_path / "f")
    with pytest.raises(TamperedArtefactError, match="missing"):
        verify_file(e, tmp_path / "nope")
