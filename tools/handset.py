"""The reference handset client: what a phone does, using only callmark/ and LiteRT (+ requests).

Library: ``Handset(state_dir, server_url)`` with ``sync()``, ``label(number, ...)``, ``tag(...)``,
``upload()``, ``replay(calls_csv)``, ``status()``. CLI: ``callmark handset sync|label|tag|upload|
replay|status|list`` (the click group ``command``). State layout and the decision chain:
docs/handset.md; the rules themselves: callmark/rules.py.
"""
from __future__ import annotations

import json
import random
import time
import uuid
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

from callmark import categories
from callmark.updater import Updater
from callmark.manifest_errors import ManifestError
from callmark.numbers import normalize
from callmark.pack import PackError, PackReader
from callmark.pack_layers import LayeredReader, is_layered, layer_stats
from callmark.rules import (
    CallFacts, Decision, Policy, RecentCalls, RuleConfig, decide, evaluate_rules,
)
from tools.handset_net import Backoff, BodyNotEncodable, ServerRejected, ServerUnavailable, Transport
from tools.handset_store import (
    LIST_KINDS, HandsetConfig, HandsetError, HandsetStore, NoTrustedRootError,
)
from tools.handset_sync import (
    FULL_CHECK_EVERY_S, ModelCheckError, PackSync, SyncResult, clean_partials, open_trust, pick_pack, sync_model,
)

__all__ = ["Handset", "HandsetError", "Decision"]

UTC_OFFSET_H = {"CN": 8}  # local time of the phone's region (hour-of-day feature)
HISTORY_FLUSH = 20_000  # recorded calls kept in memory before label() writes them (bounds memory);
#                        callers flush() after a call ends, off the decision path
MAX_BATCH = 500  # tag events per upload request (server limit)


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _refused(body: Any) -> bool:
    """A 400 in the server's JSON error shape: the request itself was refused (not a proxy page)."""
    return isinstance(body, dict) and body.get("code") == 400 and isinstance(body.get("message"), str)


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def parse_time(value: Any) -> float:
    """Epoch seconds from a number or an ISO-8601 string (UTC when no zone is given)."""
    if value is None or value == "":
        raise HandsetError("empty time")
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(value)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise HandsetError(f"time {value!r} is neither epoch seconds nor ISO-8601 like "
                           "2026-03-02T08:15:00Z") from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp()


class Handset:
    """One phone: its state directory, its sync server, its pack, model, lists, queue and history."""

    def __init__(self, state_dir: str | Path, server_url: str | None = None, *, root: Any = None,
                 tofu: bool = False, channel: str | None = None, region: str | None = None,
                 device_id: str | None = None, policy: Policy | None = None, rules: RuleConfig | None = None,
                 backoff: Backoff | None = None, timeout: float = 10.0, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep, rng: random.Random | None = None,
                 full_check_every_s: float = FULL_CHECK_EVERY_S, remember: bool = False):
        self.store = HandsetStore(state_dir)
        self.full_check_every_s = full_check_every_s  # rehash every pack row this often (s)
        overrides = {k: v for k, v in (("server_url", server_url), ("channel", channel),
                                       ("region", region and region.upper())) if v}
        saved = self.store.load_config()
        self.created = saved is None
        if saved is None:  # a new phone: its settings are what it was first set up with
            saved = HandsetConfig(device_id=device_id or uuid.uuid4().hex, server_url=server_url or "",
                                  channel=channel or "stable", region=(region or "CN").upper())
            self.store.save_config(saved)
        elif remember and any(getattr(saved, k) != v for k, v in overrides.items()):
            saved = replace(saved, **overrides)
            self.store.save_config(saved)
        # Settings given to this object apply to it only (a flag given once never sticks) unless
        # `remember`: `saved` is the state directory's, `config` this session's.
        self.saved_config = saved
        self.config = cfg = replace(saved, **overrides)
        self.root, self.tofu = root, tofu
        self.policy, self.rules = (policy or Policy()).validate(), (rules or RuleConfig()).validate()
        self.backoff, self.timeout = backoff or Backoff(), timeout
        self.clock, self.sleep, self.rng = clock, sleep, rng or random.Random()
        self._transport: Transport | None = None
        self._reader: PackReader | None = None
        self._pack_checked = False
        self._lists: dict[int, str] | None = None
        self._runner: Any = None
        self._runner_sha = None
        self._tz = timedelta(hours=UTC_OFFSET_H.get(cfg.region, 0))
        self._recent = RecentCalls(self.rules)
        self._seen: dict[int, list] = {}
        self._dirty_seen: dict[int, list] = {}
        self._pending_calls: list[tuple] = []
        self._loaded_history = False

    # ------------------------------------------------------------ plumbing
    def transport(self) -> Transport:
        if self._transport is None:
            self._transport = Transport(self.config.server_url, self.timeout, self.backoff, self.sleep, self.rng)
        return self._transport

    def close(self) -> None:
        """Write pending history and close files."""
        self.flush()
        self._reset_pack()
        self.store.close()

    def __enter__(self) -> "Handset":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def flush(self) -> None:
        """Persist the call history recorded since the last flush."""
        if self._pending_calls:
            self.store.save_calls(self._pending_calls)
            self._pending_calls = []
        if self._dirty_seen:
            self.store.save_seen(self._dirty_seen)
            self._dirty_seen = {}

    def _pack(self) -> PackReader | None:
        if self._reader is None and not self._pack_checked:
            self._pack_checked = True
            s = self.store.load_sync()
            p = self.store.pack_path(s.pack_name) if s.pack_name else None
            if p is not None and is_layered(str(p)):
                try:
                    self._reader = LayeredReader(str(p))
                except (PackError, OSError):
                    self._reader = None
        return self._reader

    def _model(self) -> Any:
        if self._runner is None:
            sha = self.store.load_sync().model_sha256
            d = self.store.model_dir(sha) if sha else None
            if d is not None and (d / "model.tflite").is_file():
                try:
                    from callmark.model import ModelRunner
                    self._runner, self._runner_sha = ModelRunner(d), sha
                except Exception:  # noqa: BLE001 - a broken model must never stop labelling
                    self._runner = False
            else:
                self._runner = False
        return self._runner or None

    def _history(self) -> None:
        if self._loaded_history:
            return
        self._loaded_history = True
        since = self.clock() - max(self.rules.bombing_window_s, 3600.0)
        for callee, t, key, unknown in self.store.recent_calls(since):
            self._recent.add(callee, t, key, bool(unknown))
        self._seen = self.store.load_seen()

    def lists(self) -> dict[int, str]:
        if self._lists is None:
            self._lists = self.store.lists()
        return self._lists

    # ------------------------------------------------------------ user lists
    def list_add(self, kind: str, number: str, name: str | None = None) -> int:
        """Put a number on the user's contacts / allow / block list; returns its key."""
        key = self._key(number)
        self.store.list_add(kind, key, number, name)
        self._lists = None
        return key

    def list_remove(self, kind: str, number: str) -> bool:
        ok = self.store.list_remove(kind, self._key(number))
        self._lists = None
        return ok

    def _key(self, number: str) -> int:
        nf = normalize(number, self.config.region)
        if nf.key is None:
            raise HandsetError(f"cannot read {number!r} as a phone number ({nf.irregular}); "
                               "give digits like +8613812345678")
        return nf.key

    # ------------------------------------------------------------ sync
    def _check_settings(self) -> None:
        """Sync with the phone's own region and channel only: the pack and the trusted manifest on
        disk belong to them, so a one-off --region/--channel would swap them behind the user's back."""
        for name in ("region", "channel"):
            mine, given = getattr(self.saved_config, name), getattr(self.config, name)
            if mine != given:
                raise HandsetError(f"this handset syncs {name} {mine!r}; {name} {given!r} was given for this "
                                   f"command only. To change the phone's setting, save it: "
                                   f"callmark handset --{name} {given} config --save")

    def sync(self, force: bool = False) -> SyncResult:
        """One sync: honour the wait hint (unless force), then manifest -> pack -> model."""
        now = self.clock()
        s = self.store.load_sync()
        r = SyncResult("failed", manifest_version=s.manifest_version, pack=s.pack_name,
                       pack_version_before=s.pack_version, pack_version=s.pack_version)
        if not force and now < s.next_sync_after:
            r.status, r.next_sync_after, r.wait_s = "waiting", s.next_sync_after, s.next_sync_after - now
            return r
        self._check_settings()
        s.last_attempt = now
        t = self.transport()
        before = t.bytes_in
        try:
            trust = open_trust(self.store, t, self.root, self.tofu)
            up = Updater(trust, t, self.config.channel, now=lambda: datetime.fromtimestamp(self.clock(), timezone.utc))
            m = up.refresh()
            r.manifest_version = s.manifest_version = m.version
            entry = pick_pack(m, self.config.region, self.config.pack_tier)
            PackSync(self.store, t, up, s, self.config.channel, now=now,
                     full_check_every_s=self.full_check_every_s).run(m, entry, r)
            s.pack_name, s.pack_version, s.pack_state_hash = entry.name, entry.version, entry.state_hash
            self._reset_pack()
            try:
                if sync_model(self.store, t, up, s, self.config.device_id, r):
                    self._runner = None
            except (ManifestError, ModelCheckError, ServerRejected) as e:
                r.model = f"kept-old ({type(e).__name__}: {str(e)[:120]})"
            s.failures, s.last_success, s.last_error = 0, now, ""
            clean_partials(self.store, m)
            hints = dict(t.hints)
            wait = max(float(hints.get("min_wait_s", 0)), float(m.hints.get("min_poll_seconds", 0) or 0))
            jitter = float(hints.get("jitter_s", wait * 0.1))
            s.hints = {"min_wait_s": wait, "jitter_s": jitter}
            s.next_sync_after = now + wait + self.rng.uniform(0, jitter)
        except ServerUnavailable as e:
            self._failed(s, r, now, "offline", e, e.retry_after)
        except NoTrustedRootError:
            raise
        except (ManifestError, PackError, HandsetError, OSError) as e:
            self._failed(s, r, now, "failed", e, None)
        except Exception as e:  # noqa: BLE001 - hostile metadata or answers: a recorded failure
            self._failed(s, r, now, "failed", e, None)  # (back-off applies), never a traceback
        r.bytes_total = t.bytes_in - before
        r.next_sync_after, r.wait_s = s.next_sync_after, max(0.0, s.next_sync_after - now)
        s.history.append({"t": now, "status": r.status, "manifest": r.manifest_version,
                          "pack_version": r.pack_version, "bytes": r.bytes_downloaded,
                          "fallback": r.fallback, "error": r.error})
        self.store.save_sync(s)
        return r

    def _failed(self, s, r: SyncResult, now: float, status: str, e: Exception, retry_after: float | None):
        s.failures += 1
        s.last_error = r.error = f"{type(e).__name__}: {e}"
        delay = max(self.backoff.delay(s.failures, self.rng), retry_after or 0.0)
        s.next_sync_after = now + delay
        r.status = status

    def _reset_pack(self) -> None:
        if self._reader is not None:
            self._reader.close()
        self._reader, self._pack_checked = None, False

    # ------------------------------------------------------------ label
    def label(self, number: str, *, ring_s: float | None = None, answered: bool | None = None,
              in_contacts: bool = False, time: Any = None, verification: str = "none", callee: str = "me",
              talk_s: float | None = None, record: bool = True) -> Decision:
        """Decide what the phone does with an incoming call from `number` (works offline)."""
        if not isinstance(number, str):
            raise HandsetError("number must be a string as presented by the network")
        t = self.clock() if time is None else parse_time(time)
        self._history()
        nf = normalize(number, self.config.region)
        call = CallFacts.from_number_facts(nf, self.config.region, time=t, ring_s=ring_s, answered=answered,
                                           verification=verification)
        key = nf.key
        user = "contact" if in_contacts else (self.lists().get(key) if key is not None else None)
        lab = None
        if user is None and key is not None:
            reader = self._pack()
            lab = reader.lookup(key) if reader is not None else None
        known = user in ("contact", "allow") or (lab is not None and lab.category_key in categories.BENIGN_KEYS)
        rules = []
        if user is None:
            same, unknown = self._recent.counts(callee, t, key)
            rules = evaluate_rules(call, known, same + 1, unknown + (not known), self.rules)
        runner = self._model() if user is None and lab is None else None
        model = (lambda: runner.score(self._raw_facts(number, t, call, callee, key, in_contacts))) if runner else None
        d = decide(call, user_list=user, label=lab, model=model, rules=rules, policy=self._policy_for(runner))
        if record:
            self._record(callee, t, key, not known, answered, talk_s)
        return d

    def remember(self, number: str, *, time: Any, callee: str = "me", answered: bool | None = None,
                 talk_s: float | None = None, in_contacts: bool = False) -> None:
        """Add one past incoming call to the local call history (the phone's call log) without
        deciding on it: the history the rules and the model's local facts read. Unreadable numbers
        are skipped, as `label` would not record them under a key either."""
        if not isinstance(number, str):
            raise HandsetError("number must be a string as presented by the network")
        t = parse_time(time)
        self._history()
        key = normalize(number, self.config.region).key
        known = in_contacts or (key is not None and self.lists().get(key) in ("contact", "allow"))
        if not known and key is not None:
            reader = self._pack()
            lab = reader.lookup(key) if reader is not None else None
            known = lab is not None and lab.category_key in categories.BENIGN_KEYS
        self._record(callee, t, key, not known, answered, talk_s)

    def _policy_for(self, runner) -> Policy:
        """The policy, with the model's warn threshold taken from its contract when the release chose
        one (`contract.json["warn_risk"]`: the risk at the evaluated false-positive budget)."""
        extra = getattr(getattr(runner, "contract", None), "extra", None) or {}
        warn = extra.get("warn_risk")
        if not isinstance(warn, (int, float)) or not 0.0 < float(warn) <= 1.0:
            return self.policy
        warn = float(warn)
        return replace(self.policy, model_warn_risk=warn, model_label_risk=min(self.policy.model_label_risk, warn))

    def _raw_facts(self, number: str, t: float, call: CallFacts, callee: str, key: int | None,
                   in_contacts: bool) -> dict:
        local = datetime.fromtimestamp(t, timezone.utc) + self._tz
        facts = {"number": number, "hour": local.hour, "weekday": local.weekday(),
                 "verification": call.verification, "in_contacts": in_contacts}
        reader = self._pack() if key is not None else None
        if reader is not None:
            facts["pack_block_harmful"] = reader.block_harmful(key)
        seen = self._seen.get((callee, key)) if key is not None else None
        if seen:
            facts.update(prior_calls=seen[0], prior_answered=seen[1], last_talk_s=seen[2],
                         days_since_last=max(0.0, (t - seen[3]) / 86400.0))
        return facts

    def _record(self, callee: str, t: float, key: int | None, unknown: bool, answered: bool | None,
                talk_s: float | None) -> None:
        self._recent.add(callee, t, key, unknown)
        self._pending_calls.append((callee, t, key, int(unknown)))
        if key is not None:
            ck = (callee, key)
            v = self._seen.get(ck) or [0, 0, 0.0, t]
            v = [v[0] + 1, v[1] + int(bool(answered)), float(talk_s or 0.0) if answered else v[2], t]
            self._seen[ck] = self._dirty_seen[ck] = v
        if len(self._pending_calls) >= HISTORY_FLUSH:
            self.flush()

    # ------------------------------------------------------------ tags
    def tag(self, number: str, category: str, *, company: str | None = None, note: str | None = None,
            ring_s: float | None = None, talk_s: float | None = None, answered: bool | None = None,
            direction: str | None = None, time: Any = None, event_id: str | None = None) -> str:
        """Queue a tag event offline (uploaded later in batches); returns its event id."""
        categories.by_key(category)  # clear error naming the valid keys
        for name, value in (("number", number), ("company", company), ("note", note)):
            if isinstance(value, str) and not _is_text(value):
                raise HandsetError(f"{name} is not valid text (undecodable bytes or a lone surrogate, e.g. "
                                   f"from a non-UTF-8 terminal); give it as UTF-8")
        if not isinstance(number, str) or not number.strip() or len(number) > 64:
            raise HandsetError("number must be 1..64 characters as displayed, e.g. +8613812345678")
        if company is not None and len(company) > 100:
            raise HandsetError("company name is limited to 100 characters")
        if note is not None and len(note) > 500:
            raise HandsetError("note is limited to 500 characters")
        if direction not in (None, "in", "out"):
            raise HandsetError("direction must be 'in' or 'out'")
        body = {"event_id": event_id or uuid.uuid4().hex, "number": number.strip(), "category": category,
                "ts": _iso(self.clock() if time is None else parse_time(time)), "region": self.config.region}
        for k, v in (("company", company), ("note", note), ("ring_s", ring_s), ("talk_s", talk_s),
                     ("answered", answered), ("direction", direction)):
            if v is not None:
                body[k] = v
        return self.store.enqueue_tag(body)

    def _register(self, t: Transport) -> None:
        status, body = t.post_json("/v1/devices", {"device_id": self.config.device_id,
                                                  "platform": "callmark-reference"})
        if status != 201 or not isinstance(body, dict) or "token" not in body:
            raise ServerRejected(f"device registration failed: HTTP {status} {body}", status, body)
        for c in (self.config, self.saved_config):
            c.token, c.reporter = body["token"], body.get("reporter", "")
        self.store.save_config(self.saved_config)

    def upload(self, batch_size: int = MAX_BATCH) -> dict:
        """Upload queued tags in batches; keeps them queued when the server is unreachable."""
        batch_size = max(1, min(int(batch_size), MAX_BATCH))
        out = {"sent": 0, "acked": 0, "stored": 0, "duplicates": 0, "rejected": 0, "batches": 0,
               "status": "ok", "error": ""}
        t = self.transport()
        reregistered = False
        try:
            if not self.config.token:
                self._register(t)
            while True:
                batch = self.store.pending_tags(batch_size)
                if not batch:
                    break
                ids = [e["event_id"] for e in batch]
                try:
                    status, body = t.post_json("/v1/tags", {"region": self.config.region, "events": batch},
                                               self.config.token)
                except BodyNotEncodable as e:  # refused before sending: isolate the event like a 400
                    status, body = 400, {"code": 400, "message": str(e)}
                out["batches"] += 1
                if status == 200:
                    self.store.mark_acked(ids)
                    out["sent"] += len(ids)
                    out["acked"] += int(body.get("acked", len(ids)))
                    out["stored"] += int(body.get("stored", 0))
                    out["duplicates"] += int(body.get("duplicates", 0))
                elif status == 401 and not reregistered:
                    reregistered = True
                    self._register(t)
                elif status == 413 and len(batch) > 1 or status == 400 and _refused(body) and len(batch) > 1:
                    batch_size = max(1, len(batch) // 2)   # halve until the bad event is alone
                elif status == 400 and _refused(body):
                    self.store.mark_rejected(ids[0], json.dumps((body or {}).get("message", body))[:300])
                    out["rejected"] += 1                  # refused as a body: never resent, queue moves on
                elif status == 422:
                    out["rejected"] += self._reject(batch, body)
                else:
                    self.store.mark_failed(ids, f"HTTP {status}")
                    raise ServerRejected(f"tag upload refused: HTTP {status}: "
                                         f"{(body or {}).get('message', body)}", status, body)
        except ServerUnavailable as e:
            out["status"], out["error"] = "offline", str(e)
        except ServerRejected as e:
            out["status"], out["error"] = "refused", str(e)
        out["pending"] = self.store.tag_counts()["pending"]
        return out

    def _reject(self, batch: list[dict], body: Any) -> int:
        """Mark the events a 422 names as rejected (kept locally, never resent); others stay queued."""
        errs = ((body or {}).get("errors") or {}).get("json", {}).get("events", {})
        bad = {int(i) for i in errs if str(i).isdigit()} if isinstance(errs, dict) else set()
        if not bad:
            bad = set(range(len(batch)))
        for i in bad:
            if i < len(batch):
                self.store.mark_rejected(batch[i]["event_id"], json.dumps(errs.get(str(i), errs)
                                                                         if isinstance(errs, dict) else errs)[:300])
        return len(bad)

    # ------------------------------------------------------------ replay and status
    def replay(self, calls_csv: str | Path, limit: int | None = None, incoming_only: bool = True,
               truth_csv: str | Path | None = None, history_csv: str | Path | None = None) -> dict:
        """Label a stream of calls (simulator calls.csv) and summarise decisions and timings; with
        `history_csv` the handset first builds its local call history from earlier calls (unscored)."""
        from tools.handset_replay import replay_calls
        return replay_calls(self, calls_csv, limit, incoming_only, truth_csv, history_csv)

    @property
    def has_pack(self) -> bool:
        """Whether a label pack is installed (a first sync installs one)."""
        return self._pack() is not None

    def _model_info(self, sha: str) -> dict | None:
        """Size, classes and the release's warn threshold of the installed model (None: no model)."""
        d = self.store.model_dir(sha) if sha else None
        if d is None or not (d / "model.tflite").is_file():
            return None
        info = {"bytes": (d / "model.tflite").stat().st_size}
        try:
            contract = json.loads((d / "contract.json").read_text())
            info.update(classes=len(contract.get("classes") or []), warn_risk=contract.get("warn_risk"))
        except (OSError, ValueError):
            info["contract"] = "unreadable"
        return info

    def status(self) -> dict:
        """What the handset holds: config, sync state, pack, model, lists, tag queue."""
        s = self.store.load_sync()
        pack = None
        reader = self._pack()
        if reader is not None:
            pack = {k: reader.meta.get(k) for k in ("name", "version", "entries", "state_hash", "built_at")}
            try:
                pack["layers"] = layer_stats(reader.path)
            except (PackError, OSError):
                pass
        cfg = self.config.to_dict()
        cfg["token"] = "set" if cfg["token"] else ""
        return {"state_dir": str(self.store.dir), "config": cfg, "sync": {k: v for k, v in s.to_dict().items()
                                                                          if k != "history"},
                "last_syncs": s.history[-3:], "pack": pack, "model": s.model_sha256[:16] or None,
                "model_info": self._model_info(s.model_sha256),
                "lists": {k: sum(1 for v in self.lists().values() if v == k) for k in LIST_KINDS},
                "tags": self.store.tag_counts()}

