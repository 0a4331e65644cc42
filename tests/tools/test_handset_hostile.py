"""The handset against hostile mirrors, answers and local damage (issue 17): a recorded failure with
back-off, never a traceback; bounded answers; a poisoned tag does not block the queue; the pack's
full state hash is re-checked on a schedule and after an interrupted apply."""
from __future__ import annotations

import json
import random
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from callmark import pack_layers
from tests.tools.handset_helpers import FRAUD, TELE, Publisher, serve
from tools.cli import main
from tools.handset import Handset
from tools.handset_net import MAX_ANSWER_BYTES, ServerRejected, Transport

DAY = 86400.0


class Clock:
    def __init__(self, t: float = 1_790_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def phone(path, url, pub, **kw) -> Handset:
    kw.setdefault("sleep", lambda s: None)
    kw.setdefault("rng", random.Random(1))
    return Handset(path, url, root=pub.root_file, **kw)


@pytest.fixture
def pub(tmp_path):
    p = Publisher(tmp_path / "rel")
    p.publish(1)
    return p


@pytest.mark.parametrize("poison", [b"[" * 100_000 + b"]" * 100_000,
                                    b'{"signed": {"version": ' + b"9" * 5000 + b'}, "signatures": []}'],
                         ids=["deep", "long-number"])
def test_hostile_manifest_is_a_recorded_failure_with_backoff(pub, tmp_path, poison):
    clock = Clock()
    h = phone(tmp_path / "ph", str(pub.exports), pub, clock=clock)
    assert h.sync().status == "full"
    (pub.exports / "channels" / "stable" / "manifest.json").write_bytes(poison)
    r = h.sync(force=True)
    s = h.store.load_sync()
    assert r.status == "failed" and "manifest" in r.error and "\n" not in r.error
    assert s.failures == 1 and s.next_sync_after > clock.t           # back-off applies
    assert h.label(FRAUD).action == "reject"                           # the pack is intact
    h.close()
    res = CliRunner().invoke(main, ["verify", str(pub.exports), "--root", str(pub.root_file)])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "manifest.json" in res.output and ("nested" in res.output or "number of 5000" in res.output)


class EndlessAnswer:
    """A requests-like response streaming JSON forever (a mirror answering 400 MB)."""

    status_code = 200
    headers: dict = {}

    def __init__(self):
        self.sent = 0

    def iter_content(self, n):
        yield b'{"status": "delta", "pad": "'
        while True:
            self.sent += n
            yield b"x" * n

    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False

    def close(self):
        pass


def test_json_answers_are_read_with_a_cap():
    answer = EndlessAnswer()

    class Session:
        def request(self, *a, **kw):
            assert kw.get("stream") is True
            return answer
    t = Transport("http://mirror.invalid", session=Session(), sleep=lambda s: None)
    with pytest.raises(ServerRejected, match="longer than"):
        t.post_json("/v1/update", {"channel": "stable"})
    assert answer.sent <= MAX_ANSWER_BYTES + 128 * 1024


def test_a_poisoned_tag_is_rejected_alone_and_the_queue_moves_on(pub, tmp_path):
    with serve(pub.exports, tmp_path / "srv") as url:
        h = phone(tmp_path / "ph", url, pub)
        good = [h.tag(FRAUD, "fraud"), h.tag(TELE, "telemarketing")]
        base = {"number": FRAUD, "category": "fraud", "ts": "2026-01-01T00:00:00Z", "region": "CN"}
        deep = h.store.enqueue_tag({**base, "event_id": "deep", "company": json.loads("[" * 100 + "]" * 100)})
        good.append(h.tag(TELE, "fraud"))
        inf = h.store.enqueue_tag({**base, "event_id": "inf", "ring_s": float("inf")})   # not JSON at all
        good.append(h.tag(FRAUD, "telemarketing"))
        up = h.upload()
        assert (up["status"], up["sent"], up["rejected"], up["pending"]) == ("ok", 4, 2, 0), up
        assert h.store.tag_counts() == {"pending": 0, "acked": 4, "rejected": 2}
        for bad in (deep, inf):
            assert h.store.db.execute("SELECT rejected FROM tags WHERE event_id=?", (bad,)).fetchone()[0]
        h.tag(TELE, "fraud")
        assert h.upload()["acked"] == 1 and h.store.tag_counts()["pending"] == 0   # back to full batches
        h.close()


def test_stale_and_empty_partial_downloads_are_removed_after_a_sync(pub, tmp_path):
    h = phone(tmp_path / "ph", str(pub.exports), pub)
    (h.store.downloads / "0123456789abcdef-CN-full-v0.pack.part").write_bytes(b"")   # interrupted first
    (h.store.downloads / "fedcba9876543210-old.delta.part").write_bytes(b"half")     # an older release
    assert h.sync().status == "full"
    assert list(h.store.downloads.glob("*.part")) == []
    h.close()


def _plant_row(pack: Path) -> None:
    """Edit rows of the base layer behind the pack's back (HEAD's state hash stays as it was)."""
    con = sqlite3.connect(pack / pack_layers.read_head(str(pack))["files"]["base"])
    con.execute("INSERT INTO labels VALUES (8613300000001, 3, 0.99, 50, 0, 20500)")
    con.commit()
    con.close()


def test_tampered_pack_is_caught_by_the_scheduled_full_check(pub, tmp_path):
    clock = Clock()
    h = phone(tmp_path / "ph", str(pub.exports), pub, clock=clock, full_check_every_s=7 * DAY)
    assert h.sync().status == "full"
    pack = h.store.pack_path("CN-full")
    _plant_row(pack)
    pub.publish(2)
    clock.t += 1 * DAY                     # not due yet: the O(delta) path is taken (and trusted)
    assert h.sync(force=True).status == "delta"
    assert pack_layers.state_hash(str(pack)) != pack_layers.read_meta(str(pack))["state_hash"]
    clock.t += 7 * DAY                     # due: every row is rehashed, the lie is found
    pub.publish(3)
    r = h.sync(force=True)
    assert r.status == "full" and any("local pack discarded" in n for n in r.notes), r.to_dict()
    assert pack_layers.state_hash(str(pack)) == pack_layers.read_meta(str(pack))["state_hash"]
    assert h.store.load_sync().pack_checked_at == clock.t
    h.close()


def test_an_interrupted_apply_forces_a_full_check_at_the_next_sync(pub, tmp_path):
    clock = Clock()
    h = phone(tmp_path / "ph", str(pub.exports), pub, clock=clock)
    assert h.sync().status == "full"
    s = h.store.load_sync()
    s.pack_check_due = True                # what a kill during apply leaves in sync.json
    h.store.save_sync(s)
    _plant_row(h.store.pack_path("CN-full"))
    pub.publish(2)
    r = h.sync(force=True)
    assert r.status == "full" and h.store.load_sync().pack_check_due is False
    h.close()


@pytest.mark.parametrize("url", ["ftp://mirror.example/exports", "gopher://x"])
def test_a_server_url_of_another_scheme_is_refused_with_the_forms_that_work(url):
    from tools.handset_net import HandsetError
    with pytest.raises(HandsetError, match=r"http\(s\):// URL, a file:// URL or an exports/ directory"):
        Transport(url)


def test_a_dead_server_is_reported_in_the_operating_systems_words():
    import requests

    from tools.handset_net import Backoff, ServerUnavailable

    class Refusing:
        def request(self, *a, **kw):
            raise requests.ConnectionError(
                "HTTPConnectionPool(host='127.0.0.1', port=1): Max retries exceeded with url: /v1/x (Caused by "
                "NewConnectionError('<urllib3.connection.HTTPConnection object at 0x7f>: Failed to establish a "
                "new connection: [Errno 111] Connection refused'))")

    t = Transport("http://127.0.0.1:1", session=Refusing(), sleep=lambda s: None, backoff=Backoff(retries=1))
    with pytest.raises(ServerUnavailable) as err:
        t.request("GET", "/v1/x")
    assert str(err.value) == "http://127.0.0.1:1: cannot connect (Connection refused) (after 2 attempts)"


def test_a_lookup_before_any_sync_says_there_is_no_pack_yet(tmp_path):
    state = str(tmp_path / "phone")
    r = CliRunner().invoke(main, ["handset", "--state", state, "label", "+8613812345678", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["action"] == "allow"   # stdout stays one JSON document
    assert "has no label pack yet" in r.stderr and f"callmark handset --state {state} sync" in r.stderr


def test_replay_cli_builds_the_call_log_from_history_first(tmp_path):
    header = "caller,callee_hash,start,ring_s,talk_s,answered,direction,presentation,verification\n"
    earlier = tmp_path / "earlier.csv"
    earlier.write_text(header + "".join(f"+8613812345678,s1,2026-03-0{d}T09:00:00Z,5,60,1,in,,none\n"
                                        for d in range(1, 4)))
    today = tmp_path / "today.csv"
    today.write_text(header + "+8613812345678,s1,2026-03-05T09:00:00Z,5,60,1,in,,none\n")
    r = CliRunner().invoke(main, ["handset", "--state", str(tmp_path / "phone"), "replay", str(today),
                                  "--history", str(earlier), "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["history_calls"] == 3 and out["calls"] == 1
