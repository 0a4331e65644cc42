"""`callmark demo` (`make demo`): the main job end to end on embedded defaults.

Day 1: simulate a crowd, upload its tags through the real server API, build, sign and publish a
release to beta and promote it to stable (as a maintainer would), sync a handset, label a day of simulated calls. Day 2: new tags, a new release, a delta
sync, the next day's calls. Prints a summary table and where the evaluation report is.
"""
from __future__ import annotations

import csv
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import click
import requests
from callmark.progress import bar

from callmark.manifest import utcnow  # noqa: F401  (the client contract must import cleanly)
from tools.local_process import NotReady, ProcessExited, free_port, http_ok, stop_process, wait_until_ready


@dataclass
class DemoConfig:
    """Sizes and places of the demo. Defaults finish in a few minutes on 2 cores."""

    workdir: str = "var/demo"  # per-run state (wiped at start): simulation, store, builds, handset
    exports: str = "exports"  # published artefacts (a previous demo's releases are cleared at start)
    keys: str = "var/keys"  # signing keys (kept: the exports' root of trust)
    days: int = 9  # simulated days; the last two are "day 1" and "day 2" of the demo
    users: int = 3000  # handset users who may tag
    tag_scale: float = 3.0  # how often users tag (x the simulator's default), so two days settle labels
    seed: int = 7
    calls_per_day: int | None = None  # None: the simulator's default for `users`
    channel: str = "stable"
    port: int = 0  # 0: a free loopback port
    student: bool = True
    # days of call log the handset holds before day 1 (its local history); None: every earlier day, as
    # a phone's call log does (the model's local facts are trained on the whole history)
    history_days: int | None = None
    serve: bool = False  # keep the server running at the end (for the console) until Ctrl-C
    steps: list = field(default_factory=list)


# ------------------------------------------------------------------------------------------ data

def day_start(meta: dict, day: int) -> datetime:
    """Start of simulated day index `day` (the simulator's days are China local days, UTC+8)."""
    start = datetime.fromisoformat(meta["config"]["start"])
    if start.tzinfo is None:
        start = start.replace(tzinfo=timezone(timedelta(hours=8)))
    return (start + timedelta(days=day)).astimezone(timezone.utc)


def split_tags(tags_jsonl: Path, cut: datetime, after: datetime | None) -> list[dict]:
    """Tag events with after <= ts < cut."""
    out = []
    with open(tags_jsonl, encoding="utf-8") as f:
        for line in f:
            ev = json.loads(line)
            ts = datetime.fromisoformat(ev["ts"].replace("Z", "+00:00"))
            if ts < cut and (after is None or ts >= after):
                out.append(ev)
    return out


def split_calls(calls_csv: Path, start: datetime | None, end: datetime, out: Path) -> Path:
    """Write the call records with start <= time < end to `out`."""
    lo = start.strftime("%Y-%m-%dT%H:%M:%SZ") if start else ""
    hi = end.strftime("%Y-%m-%dT%H:%M:%SZ")
    with open(calls_csv, newline="") as src, open(out, "w", newline="") as dst:
        reader = csv.reader(src)
        writer = csv.writer(dst)
        header = next(reader)
        writer.writerow(header)
        col = header.index("start")
        for row in reader:
            if lo <= row[col] < hi:
                writer.writerow(row)
    return out


# ------------------------------------------------------------------------------------------ server

class Server:
    """A real `callmark serve` (gunicorn) on loopback for the demo's lifetime."""

    def __init__(self, data_dir: Path, exports: Path, port: int, admin_key: str, keys: Path):
        self.url = f"http://127.0.0.1:{port}"
        self.admin_key = admin_key
        env = dict(os.environ, CALLMARK_DATA_DIR=str(data_dir), CALLMARK_EXPORTS_DIR=str(exports),
                   CALLMARK_ADMIN_KEY=admin_key, CALLMARK_DEVICES_LIMIT_IP="100000/hour",
                   CALLMARK_TAGS_LIMIT_DEVICE="10000/minute", CALLMARK_TAGS_LIMIT_IP="100000/minute",
                   CALLMARK_SYNC_MIN_WAIT_S="0", CALLMARK_SYNC_JITTER_S="0",
                   CALLMARK_KEYS_DIR=str(keys))
        self.log = open(data_dir / "server.log", "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "tools.cli", "serve", "--port", str(port)],
                                     env=env, stdout=self.log, stderr=subprocess.STDOUT)
        try:
            wait_until_ready(self.proc, lambda: http_ok(self.url), timeout_s=60, what="the server",
                             interval_s=0.2)
        except ProcessExited:
            self.log.close()
            raise click.ClickException(f"the server exited; see {data_dir / 'server.log'}") from None
        except NotReady:
            self.stop()
            raise click.ClickException(
                f"the server did not come up in 60 s; see {data_dir / 'server.log'}") from None

    def stop(self):
        stop_process(self.proc, grace_s=10)
        self.log.close()


def upload_tags(server: Server, events: list[dict], tokens: dict[str, str]) -> dict:
    """Register a device per reporter and upload its tags in batches, as phones do."""
    by_reporter: dict[str, list[dict]] = {}
    for ev in events:
        by_reporter.setdefault(ev["reporter"], []).append(ev)
    http = requests.Session()
    counts = {"acked": 0, "duplicates": 0, "devices": 0}
    for reporter, evs in bar(sorted(by_reporter.items()), desc="upload tags", unit="device",
                             mininterval=1.0):
        if reporter not in tokens:
            r = http.post(server.url + "/v1/devices", json={"device_id": reporter, "platform": "demo"})
            r.raise_for_status()
            tokens[reporter] = r.json()["token"]
            counts["devices"] += 1
        for i in range(0, len(evs), 500):
            batch = [{k: v for k, v in ev.items() if k != "reporter"} for ev in evs[i:i + 500]]
            r = http.post(server.url + "/v1/tags", json={"events": batch},
                          headers={"Authorization": f"Bearer {tokens[reporter]}"})
            if r.status_code != 200:
                raise click.ClickException(f"tag upload refused ({r.status_code}): {r.text[:300]}")
            body = r.json()
            for k in ("acked", "duplicates"):
                counts[k] += int(body.get(k, 0))
    return counts


def load_lookup_labels(server: Server, labels_csv: str, version: int) -> int:
    """Refresh the server's k-anonymous lookup table from the release's labels."""
    with open(labels_csv, "rb") as f:
        r = requests.post(server.url + f"/v1/admin/labels?version={version}", data=f,
                          headers={"Content-Type": "text/csv", "X-API-Key": server.admin_key})
    if r.status_code != 200:
        raise click.ClickException(f"label upload refused ({r.status_code}): {r.text[:300]}")
    return int(r.json()["entries"])


def register_verified(server: Server, verified_csv: Path, region: str = "CN") -> int:
    """Register the simulated verified businesses through the admin API, as a maintainer would (the
    build then reads them from the store, and the console lists them); returns how many."""
    n = 0
    with open(verified_csv, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            r = requests.post(server.url + "/v1/admin/verified", headers={"X-API-Key": server.admin_key},
                              json={"number": row["number"], "region": region, "company": row["company"]})
            if r.status_code != 200:
                raise click.ClickException(f"verified business {row['number']} refused ({r.status_code}): "
                                           f"{r.text[:300]}")
            n += 1
    return n


# ------------------------------------------------------------------------------------------ recipe

def run_demo(cfg: DemoConfig) -> dict:
    """Run the two demo days; returns the summary (also printed)."""
    from tools.handset import Handset
    from tools.simulate import simulate
    import publisher as release
    from trainer.pipeline import BuildConfig, build

    work, exports, keys = Path(cfg.workdir), Path(cfg.exports), Path(cfg.keys)
    clear_previous_demo(exports)
    shutil.rmtree(work, ignore_errors=True)
    (work / "store").mkdir(parents=True)
    exports.mkdir(parents=True, exist_ok=True)
    summary: dict = {"days": []}
    t0 = time.perf_counter()

    click.echo("== simulate the crowd")
    sim = work / "sim"
    sim_kwargs = {"tag_scale": cfg.tag_scale}
    if cfg.calls_per_day:
        sim_kwargs["calls_per_day"] = cfg.calls_per_day
    meta = simulate(str(sim), days=cfg.days, users=cfg.users, seed=cfg.seed, **sim_kwargs)
    meta = json.loads((sim / "meta.json").read_text())
    summary["simulated"] = {k: meta["summary"].get(k) for k in ("calls", "tags", "numbers", "harmful_numbers")}

    if not (keys / "root").exists() and not list(keys.glob("*root*")):
        release.init_keys(str(keys))
    admin_key = secrets.token_urlsafe(24)
    server = Server(work / "store", exports, cfg.port or free_port(), admin_key, keys)
    tokens: dict[str, str] = {}
    try:
        handset = Handset(work / "handset", server.url, root=str(_root_file(exports, keys)),
                          channel=cfg.channel)
        summary["verified_businesses"] = register_verified(server, sim / "verified.csv")
        previous_model = None
        for n, day in enumerate((cfg.days - 2, cfg.days - 1), 1):
            cut, prev_cut = day_start(meta, day), (day_start(meta, day - 1) if n > 1 else None)
            click.echo(f"== day {n}: tags before {cut:%Y-%m-%d} through the API")
            uploaded = upload_tags(server, split_tags(sim / "tags.jsonl", cut, prev_cut), tokens)
            calls_hist = split_calls(sim / "calls.csv", None, cut, work / f"calls-until-day{n}.csv")
            calls_day = split_calls(sim / "calls.csv", cut, cut + timedelta(days=1), work / f"calls-day{n}.csv")
            # the phones' own call log: the days before (local history and whom they dialled)
            calls_log = None
            if n == 1:
                calls_log = calls_hist if cfg.history_days is None else split_calls(
                    sim / "calls.csv", cut - timedelta(days=cfg.history_days), cut, work / f"calls-log-day{n}.csv")
            click.echo(f"== day {n}: build")
            built = build(BuildConfig(out=str(work / "builds"), data_dir=str(work / "store"),
                                      calls=str(calls_hist),
                                      recycled=str(sim / "recycled.csv"), appeals=str(sim / "appeals.csv"),
                                      as_of=cut.isoformat(), student=cfg.student,
                                      published_model=previous_model, seed=cfg.seed,
                                      eval_truth=str(sim / "truth.csv")))
            click.echo(f"== day {n}: publish to beta, promote to {cfg.channel}")
            release.publish_release(exports, built.pack_dir, built.delta_dirs, built.model_dir, "beta", keys,
                                    note=f"{DEMO_NOTE}{n}")
            manifest = release.promote(exports, keys, "beta", cfg.channel)
            lookup = load_lookup_labels(server, built.labels_csv, manifest.version)
            previous_model = built.model_dir or previous_model
            click.echo(f"== day {n}: handset sync and a day of calls")
            t = time.perf_counter()
            synced = handset.sync(force=True)
            sync_s = time.perf_counter() - t
            replay = handset.replay(calls_day, truth_csv=sim / "truth.csv", history_csv=calls_log)
            summary["days"].append({"day": n, "uploaded": uploaded, "build": built.to_dict(),
                                    "manifest_version": manifest.version, "lookup_labels": lookup,
                                    "sync": synced.to_dict(), "sync_s": sync_s, "replay": replay,
                                    "pack": _pack_sizes(built.pack_dir),
                                    "deltas": _delta_sizes(built.delta_dirs)})
        handset.close()
        # the demo's server goes away with the run: the phone keeps syncing from the exports mirror
        Handset(work / "handset", str(exports), remember=True).close()
        summary["phone_server"] = str(exports)
    except BaseException:
        server.stop()
        raise
    if not cfg.serve:
        server.stop()
    summary["seconds"] = time.perf_counter() - t0
    (work / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    print_summary(summary, work)
    if cfg.serve:
        keep_serving(server, work)
    return summary


def keep_serving(server: Server, work: Path) -> None:
    """Leave the demo's server up for the maintainer console until Ctrl-C (or the server exits)."""
    key_file = work / "console-key.txt"
    key_file.write_text(server.admin_key + "\n")
    key_file.chmod(0o600)
    click.echo(f"\nThe demo's server keeps running. Maintainer console: {server.url}/console/\n"
               f"Log in with the demo's admin API key (also in {key_file}):\n  {server.admin_key}\n"
               "Press Ctrl-C to stop the server.")
    try:
        while server.proc.poll() is None:
            time.sleep(1)
        click.echo(f"the server exited; see {work / 'store' / 'server.log'}")
    except KeyboardInterrupt:
        click.echo("stopping the server")
    finally:
        server.stop()


DEMO_NOTE = "demo day "  # the note of every release the demo publishes (how a rerun knows its own)


def clear_previous_demo(exports: Path) -> None:
    """Remove a previous demo run's releases from `exports` (everything but README.md), so a rerun
    publishes its builds v1 and v2 again: publishing refuses a pack older than the channel serves.

    Raises click.ClickException, touching nothing, when `exports` holds a release the demo did not
    publish (a publish without the demo's note, or a rollback, rollout or gc)."""
    import publisher as release
    from callmark.manifest_errors import ReleaseError

    if not exports.is_dir():
        return
    try:
        records = release.history(exports)
    except ReleaseError as exc:
        raise click.ClickException(f"{exports} has an unreadable release history ({exc}); "
                                   "pass --exports with another directory") from None
    foreign = [r for r in records if not (r.get("action") == "promote" or
                                          (r.get("action") == "publish" and str(r.get("note", "")).startswith(DEMO_NOTE)))]
    if foreign:
        r = foreign[0]
        raise click.ClickException(
            f"{exports} holds releases the demo did not make (first: {r.get('action')} {r.get('release', '')} "
            f"at {r.get('ts', '?')}); run the demo with --exports var/demo-exports, or clear {exports} yourself")
    if not records:
        if (exports / "channels").exists():
            raise click.ClickException(f"{exports} holds channels but no release history; run the demo with "
                                       f"--exports var/demo-exports, or clear {exports} yourself")
        return
    click.echo(f"== clear the previous demo's {len(records)} release records from {exports}/")
    for child in exports.iterdir():
        if child.name != "README.md":
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()


def _honest_by_source(acc: dict) -> str:
    """'model 100, pack_exact 8; 38 callers, at most 10 calls from one' (or 'none')."""
    by = acc.get("benign_flagged_by") or {}
    if not by:
        return "none"
    top = acc.get("benign_flagged_top_caller", 0)
    callers = acc.get("benign_flagged_callers", 0)
    return (", ".join(f"{k} {v:,}" for k, v in by.items())
            + f"; {callers:,} caller{'s' if callers != 1 else ''}, at most {top:,} call{'s' if top != 1 else ''} from one")


def _root_file(exports: Path, keys: Path) -> Path:
    """The root the app ships with: version 1 of the exports' root chain."""
    from callmark.exports import ROOT_FILE, root_path
    first = exports / root_path(1)
    return first if first.exists() else exports / ROOT_FILE


def _pack_sizes(pack_dir: str) -> dict:
    index = json.loads((Path(pack_dir) / "index.json").read_text())
    full = next(p for p in index["packs"] if p["tier"] == "full")
    return {"entries": full["entries"], "wire_bytes": full["wire_bytes"], "sqlite_bytes": full["sqlite_bytes"],
            "packs": len(index["packs"])}


def _delta_sizes(delta_dirs: list[str]) -> dict:
    if not delta_dirs:
        return {}
    index = json.loads((Path(delta_dirs[0]) / "index.json").read_text())
    full = next((d for d in index["deltas"] if d["name"].endswith("-full")), index["deltas"][0])
    return {"from_version": index["from_version"], "bytes": full["bytes"], "upserts": full["upserts"],
            "removals": full["removals"]}


def print_summary(summary: dict, work: Path) -> None:
    """The summary table people read after `make demo`."""
    rows = [("simulated calls / tags / numbers",
             " / ".join(f"{summary['simulated'][k]:,}" for k in ("calls", "tags", "numbers"))),
            ("verified businesses registered (admin API)", f"{summary.get('verified_businesses', 0):,}")]
    shipped = False  # a model accepted on an earlier day (what a refusal keeps)
    for d in summary["days"]:
        n, b, rp = d["day"], d["build"], d["replay"]
        acc = rp.get("accuracy", {})
        rows += [
            (f"day {n}: tags uploaded (new devices)", f"{d['uploaded']['acked']:,} ({d['uploaded']['devices']:,})"),
            (f"day {n}: labels / published (+ from the teacher's call-record scores)",
             f"{b['stats'].get('labels', 0):,} / {b['stats'].get('published', 0):,} "
             f"(+{b['stats'].get('model_labels_added', 0) + b['stats'].get('model_labels_upgraded', 0):,})"),
            (f"day {n}: release version", str(d["manifest_version"])),
            (f"day {n}: full pack entries, wire / SQLite bytes",
             f"{d['pack']['entries']:,}, {d['pack']['wire_bytes']:,} / {d['pack']['sqlite_bytes']:,}"),
        ]
        if d["deltas"]:
            rows.append((f"day {n}: delta from v{d['deltas']['from_version']} bytes (upserts/removals)",
                         f"{d['deltas']['bytes']:,} ({d['deltas']['upserts']}/{d['deltas']['removals']})"))
        lat = rp.get("latency", {})
        rows += [
            (f"day {n}: handset sync", f"{d['sync'].get('status')} in {d['sync_s']:.2f} s"),
            (f"day {n}: pack bytes written on the phone / base (layer written)",
             f"{d['sync'].get('pack_bytes_written', 0):,} / {d['sync'].get('pack_base_bytes', 0):,} "
             f"({', '.join(d['sync'].get('pack_layers') or ['-'])})"),
            (f"day {n}: calls labelled (by source)", f"{rp.get('calls', 0):,}: " + _by_source(rp.get('sources', {}))),
            (f"day {n}: phone, next day's calls: harmful calls warned/blocked", _pct(acc.get("harmful_flagged"))),
            (f"day {n}: phone, next day's calls: harmful labelled with the true category",
             _pct(acc.get("harmful_right_category"))),
            (f"day {n}: phone, next day's calls: honest calls warned (silenced/rejected)",
             f"{_pct(acc.get('benign_flagged'))} ({_pct(acc.get('benign_blocked'))})"),
            (f"day {n}: phone, next day's calls: honest calls warned, by source", _honest_by_source(acc)),
            (f"day {n}: decision latency p50 / p99", f"{lat.get('p50_us', '?')} / {lat.get('p99_us', '?')} µs"),
            (f"day {n}: new model", _gate_word(b, shipped)),
        ]
        shipped = shipped or b["stats"].get("model_gate") == "accepted"
        ev = b["stats"].get("model_evaluation")
        if ev:
            rows += _evaluation_rows(n, ev, b["stats"].get("model_evaluation_published"),
                                     refused=str(b["stats"].get("model_gate", "")).startswith("refused"))
        if b.get("report"):
            rows.append((f"day {n}: model evaluation report (+ report.html)", b["report"]))
    if summary.get("phone_server"):
        rows.append(("the phone syncs next from", f"{summary['phone_server']}  (callmark handset --state "
                                                   f"{work / 'handset'} sync)"))
    rows.append(("total time", f"{summary['seconds']:.0f} s"))
    width = max(len(r[0]) for r in rows)
    click.echo("\n" + "=" * (width + 30))
    for k, v in rows:
        click.echo(f"{k.ljust(width)}  {v}")
    click.echo(f"\nfull summary: {work / 'summary.json'}")


def _gate_word(b: dict, had_model: bool) -> str:
    """The release gate's verdict in words; `had_model`: a model was already published to keep."""
    gate = b["stats"].get("model_gate")
    if gate is None:
        return "none"
    if gate == "accepted":
        return "accepted by the release gate and published"
    kept = "published model kept" if had_model else "the phone runs without a model"
    return f"refused by the release gate ({kept}): " + gate.removeprefix("refused: ")


def _evaluation_rows(n: int, ev: dict, pub: dict | None, refused: bool = False) -> list[tuple[str, str]]:
    """The build's model evaluation (trainer.evaluate: held-out callers, ground truth, one flag rule).
    The figures are the new model's; `refused`: the gate kept it off the phones, so the rows say so."""
    model = "refused candidate" if refused else "model"
    def both(key, f=lambda v: f"{v:.3f}"):
        c = "n/a" if ev.get(key) is None else f(ev[key])
        return c + ("" if not pub or pub.get(key) is None else f"  (published model, same calls: {f(pub[key])})")
    fpr = f"{100 * ev['max_fpr']:.1f} %"

    def goal(key, ok, text):
        v = ev.get(key)
        return f"  [goal {text}{'' if v is not None and ok(v) else ': missed'}]"
    return [
        (f"day {n}: {model}, held-out callers not in pack: harmful calls caught at <= {fpr} FPR",
         both("recall_not_in_pack") + goal("recall_not_in_pack", lambda v: v >= 0.5, ">= 0.5")),
        (f"day {n}: {model} risk ROC AUC, each held-out caller counted once (the gate's ranking figure)",
         both("risk_auc_callers") + (f"  [per call: {ev['risk_auc']:.3f}" + (
             f", published {pub['risk_auc']:.3f}" if pub and pub.get("risk_auc") is not None else "") + "]"
             if ev.get("risk_auc") is not None else "")),
        (f"day {n}: held-out callers (build's calls): pack alone: harmful flagged / honest flagged",
         f"{ev['pack_alone']['recall']:.3f} / {ev['pack_alone']['fpr']:.4f}"),
        (f"day {n}: held-out callers (build's calls): pack + {model}: harmful / honest flagged",
         f"{ev['pack_plus_model']['recall']:.3f} / {ev['pack_plus_model']['fpr']:.4f}  "
         f"(+{ev['gain_over_pack']:.3f} recall)" + goal("gain_over_pack", lambda v: v >= 0.10, ">= +0.10")),
        (f"day {n}: {model} risk calibration error (ECE)",
         both("risk_ece") + goal("risk_ece", lambda v: v <= 0.05, "<= 0.05")),
        (f"day {n}: {model} phone warn threshold (warn_risk)", both("warn_risk")
         + (f"  [held-out callers alone: {ev['warn_risk_held_out']:.3f}; it must hold on trained-on callers too]"
            if ev.get("warn_risk_held_out") is not None and ev.get("trained_on") else "")),
    ]


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * float(x):.2f} %"


def _exit_on_signal(signum, frame):
    raise SystemExit(128 + signum)


@click.command("demo")
@click.option("--workdir", default="var/demo", show_default=True, help="Per-run state (wiped at start).")
@click.option("--exports", default="exports", show_default=True, help="Where releases are published.")
@click.option("--keys", default="var/keys", show_default=True, help="Signing keys (created on first use).")
@click.option("--days", default=9, show_default=True, help="Simulated days (the last two are demo days).")
@click.option("--users", default=3000, show_default=True, help="Handset users who may tag.")
@click.option("--seed", default=7, show_default=True)
@click.option("--calls-per-day", type=int, default=None, help="Simulated call volume per day.")
@click.option("--no-student", is_flag=True, help="Skip the on-device model (faster).")
@click.option("--serve", is_flag=True, help="Keep the server running at the end and print the console's address.")
@click.option("--port", default=0, show_default=True, help="Server port on 127.0.0.1 (0: a free one).")
def command(workdir, exports, keys, days, users, seed, calls_per_day, no_student, serve, port):
    """Run the main job end to end: simulate, upload, build, sign, publish, sync, label; twice.

    `make demo` runs it with the defaults. Afterwards var/demo holds the simulation (sim/), the
    server store (store/), the builds (builds/v1, builds/v2) and the handset (handset/); exports/
    the signed releases (beta, promoted to stable); var/keys the signing keys.

    Example: callmark demo --days 9 --users 3000

    With --serve the server stays up at the end for the maintainer console (/console/); the
    address and the admin API key to log in with are printed. Ctrl-C stops it.
    """
    if days < 3:
        raise click.BadParameter("needs at least 3 days (history + two demo days)", param_hint="--days")
    # `kill`, a service manager or a closed terminal must stop the demo's server too: SystemExit runs
    # the same clean-up as Ctrl-C (the default SIGTERM/SIGHUP action would orphan gunicorn on its port).
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _exit_on_signal)
    run_demo(DemoConfig(workdir=workdir, exports=exports, keys=keys, days=days, users=users, seed=seed,
                        calls_per_day=calls_per_day, student=not no_student, serve=serve, port=port))


def _by_source(counts: dict) -> str:
    """{"pack_exact": 6579, "model": 5551} -> "pack_exact 6,579, model 5,551" (largest first)."""
    return ", ".join(f"{name} {n:,}" for name, n in sorted(counts.items(), key=lambda kv: -kv[1])) or "none"
