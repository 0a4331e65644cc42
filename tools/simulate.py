"""Crowd simulator: callers with ground truth, carrier call records and the tags phones upload.

`simulate(out_dir, days, users, seed)` writes the files pinned in docs/interfaces.md ("Simulator
output") and returns a summary dict; `callmark simulate` is the thin CLI over it. Every generative
assumption is written up in docs/simulator.md. Output is a deterministic function of the config
(seed included): every day draws from its own random stream seeded by (seed, day, stream).

Memory is bounded by one day of calls (numpy arrays); files are streamed to `*.part` names and
renamed when complete, so a killed run never leaves a half-written file under a final name.
"""
from __future__ import annotations

import csv
import json
import math
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import click
import numpy as np

from callmark.files import commit_file
from tools import sim_population as pop
from tools.sim_population import ROLES, Population, SimulationError
from tools.sim_tags import Tagger

__all__ = ["SimConfig", "SimulationError", "simulate", "command", "OUTPUT_FILES"]

OUTPUT_FILES = ("calls.csv", "tags.jsonl", "truth.csv", "verified.csv", "appeals.csv",
                "recycled.csv", "reporters.csv", "meta.json")
CALLS_HEADER = "caller,callee_hash,start,ring_s,talk_s,answered,direction,presentation,verification"
VERIFICATION = ("none", "passed", "failed")
_VERIFICATION_ARRAY = np.array(VERIFICATION, dtype=object)
DAY_S = 86400


@dataclass
class SimConfig:
    """Everything that shapes a simulated crowd; the output is a pure function of it."""

    days: int = 14  # simulated days (local China time, UTC+8)
    users: int = 1000  # handset-app users who may tag calls (a subset of the subscribers)
    seed: int = 0
    subscribers: int | None = None  # carrier lines in the call records; None: derived (see below)
    calls_per_day: int | None = None  # target call records per day; sets `subscribers` when given
    subscribers_per_user: float = 2.0  # subscribers per app user when neither knob above is given
    start: str = "2026-03-02"  # first simulated day (local date)
    unwanted_per_day: float = 0.6  # unwanted calls per subscriber per day (all harmful roles)
    tag_scale: float = 1.0  # multiplies every tagging probability
    fake_blocs: int = 2  # coordinated blocs of fresh fake accounts
    fake_bloc_size: int = 30  # accounts per fake bloc
    fake_targets: int = 2  # honest numbers each bloc attacks
    colluder_blocs: int = 0  # blocs of aged (history-bearing) accounts that collude
    colluder_bloc_size: int = 10
    recycle_share: float = 0.3  # share of dead harmful mobile numbers reissued within the window
    recycle_freeze_days: int | None = None  # carrier freeze before reissue (real: 90); None: days//5
    network_factor: float = 3.0  # carrier lines per modelled subscriber: callers other than people
    #   dial the whole network, of which the modelled subscribers are a sample (see docs)
    rate_cap_share: float = 0.05  # a caller reaches at most this share of the network's lines a day

    def __post_init__(self):
        for name in ("days", "users", "fake_blocs", "fake_bloc_size", "fake_targets",
                     "colluder_blocs", "colluder_bloc_size"):
            value = getattr(self, name)
            least = 1 if name in ("days", "users") else 0
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise SimulationError(f"{name} must be an integer >= {least}, got {value!r}"
                                      + ("; e.g. --days 7 --users 500" if least else ""))
        if self.days < 1 or self.users < 1:
            raise SimulationError(f"days and users must be at least 1 (got days={self.days}, "
                                  f"users={self.users}); e.g. --days 7 --users 500")
        if (not isinstance(self.seed, int) or isinstance(self.seed, bool)
                or not 0 <= self.seed < 2 ** 32):
            raise SimulationError(f"seed must be an integer in 0..2**32-1, got {self.seed!r}")
        if self.calls_per_day is not None and self.calls_per_day < 100:
            raise SimulationError(f"calls_per_day must be at least 100, got {self.calls_per_day}")
        if self.subscribers is not None and self.subscribers < 10:
            raise SimulationError(f"subscribers must be at least 10, got {self.subscribers}")
        for name in ("unwanted_per_day", "tag_scale", "subscribers_per_user", "recycle_share",
                     "rate_cap_share", "network_factor"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise SimulationError(f"{name} must be a non-negative number, got {value!r}")
        try:
            np.datetime64(self.start, "D")
        except ValueError:
            raise SimulationError(f"start must be a date like 2026-03-02, got {self.start!r}") from None

    @property
    def n_subscribers(self) -> int:
        """Carrier lines (callees); app users are the first `users` of them."""
        if self.subscribers is not None:
            return max(self.subscribers, self.users)
        if self.calls_per_day is not None:
            return max(10, int(self.calls_per_day / pop.CALLS_PER_SUBSCRIBER_DAY))
        return max(10, int(round(self.users * self.subscribers_per_user)))

    @property
    def n_users(self) -> int:
        return min(self.users, self.n_subscribers)

    @property
    def freeze_days(self) -> int:
        if self.recycle_freeze_days is not None:
            return self.recycle_freeze_days
        return max(1, min(90, self.days // 5))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "SimConfig":
        """Rebuild a config (e.g. from meta.json), rejecting unknown keys."""
        if not isinstance(data, dict):
            raise SimulationError(f"config must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SimulationError(f"unknown config keys {unknown}; known: {sorted(known)}")
        return cls(**data)


def simulate(out_dir, days: int = 14, users: int = 1000, seed: int = 0, *, progress: bool = False,
             **options) -> dict:
    """Simulate `days` of calls and tags for `users` app users into `out_dir`; return a summary.

    Extra keyword options are SimConfig fields (e.g. calls_per_day=3000, fake_blocs=0).
    """
    config = SimConfig(days=days, users=users, seed=seed, **options)
    return run(config, out_dir, progress=progress)


def run(config: SimConfig, out_dir, progress: bool = False) -> dict:
    """Simulate with a ready SimConfig; see `simulate`."""
    from callmark.progress import bar as progress_bar

    t0 = time.perf_counter()
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SimulationError(f"cannot create output directory {out}: {exc}") from None
    population = Population(config)
    writer = _Writer(out)
    tagger = Tagger(config, population)
    day0_utc = (np.datetime64(config.start, "s") - np.timedelta64(8, "h")).astype(np.int64)
    calls = 0
    by_role = Counter()
    try:
        writer.calls.write(CALLS_HEADER + "\n")
        bar = progress_bar(range(config.days), desc="simulate", unit="day", disable=not progress)
        for day in bar:
            batch = population.day_calls(day)
            order = np.argsort(batch["t"], kind="stable")
            batch = {k: v[order] for k, v in batch.items()}
            start = day0_utc + day * DAY_S
            _write_calls(writer.calls, population, batch, start, seed=(config.seed, day))
            calls += len(batch["t"])
            by_role.update(dict(zip(*np.unique(population.role[batch["caller"]],
                                               return_counts=True))))
            tagger.tag_day(day, batch, start, writer.tags)
            bar.set_postfix(calls=calls, tags=tagger.count)
        tagger.finish(writer.tags, day0_utc)
        numbers = _write_truth(writer.open("truth.csv"), population)
        verified = _write_rows(writer.open("verified.csv"), ("number", "company"),
                               population.verified_rows())
        appeals = _write_rows(writer.open("appeals.csv"),
                              ("number", "categories", "filed_ts", "accepted"),
                              tagger.appeal_rows(day0_utc))
        recycled = _write_rows(writer.open("recycled.csv"), ("number", "reissued_ts"),
                               population.recycled_rows(day0_utc))
        _write_rows(writer.open("reporters.csv"), ("reporter", "kind", "callee_hash"),
                    tagger.reporter_rows())
        summary = {
            "out_dir": str(out), "days": config.days, "users": config.n_users,
            "subscribers": config.n_subscribers, "seed": config.seed, "calls": calls,
            "tags": tagger.count, "numbers": numbers, "verified": verified, "appeals": appeals,
            "recycled": recycled, "fake_accounts": tagger.fake_accounts,
            "calls_by_role": {ROLES[int(r)]: int(n) for r, n in sorted(by_role.items())},
            "tags_by_category": dict(tagger.by_category.most_common()),
            "harmful_numbers": population.harmful_count(),
            "seconds": round(time.perf_counter() - t0, 3),
        }
        meta = {"format": 1, "config": config.to_dict(), "summary": summary}
        writer.open("meta.json").write(json.dumps(meta, ensure_ascii=False, indent=1) + "\n")
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    return summary


class _Writer:
    """Streams output files under `.part` names; `commit` renames them into place."""

    def __init__(self, out: Path):
        self.out = out
        self.files: dict[str, object] = {}
        self.calls = self.open("calls.csv")
        self.tags = self.open("tags.jsonl")

    def open(self, name: str):
        handle = open(self.out / f"{name}.part", "w", encoding="utf-8", newline="")
        self.files[name] = handle
        return handle

    def commit(self):
        for name, handle in self.files.items():
            handle.close()
            commit_file(self.out / f"{name}.part", self.out / name)

    def abort(self):
        for name, handle in self.files.items():
            handle.close()
            try:
                os.remove(self.out / f"{name}.part")
            except OSError:
                pass


def _iso(epoch: np.ndarray) -> list[str]:
    """ISO-8601 UTC strings (seconds) for an array of epoch seconds."""
    text = np.datetime_as_string(epoch.astype("datetime64[s]"), unit="s")
    return [s + "Z" for s in text.tolist()]


def _hex16(values: np.ndarray) -> list[str]:
    """16-digit lowercase hex strings of uint64 values, without a Python-level format per value."""
    text = values.astype(">u8").tobytes().hex()
    return [text[i:i + 16] for i in range(0, len(text), 16)]


def _write_calls(handle, population: Population, batch: dict, day_start: int, seed,
                 chunk: int = 65536) -> None:
    """Format one day's (time-sorted) calls as CSV rows, `chunk` rows of strings at a time."""
    n = len(batch["t"])
    rng = np.random.default_rng([*seed, 91])
    variants = np.asarray(population.variant_codes(batch["caller"], rng), dtype=np.int8)
    for lo in range(0, n, chunk):
        part = slice(lo, min(n, lo + chunk))
        callers, codes = batch["caller"][part], variants[part]
        present = population.display_array[callers]
        for i in np.flatnonzero(codes).tolist():
            present[i] = population.presentation(int(callers[i]), int(codes[i]))
        columns = (
            population.e164_array[callers].tolist(),
            _hex16(population.callee_hash[batch["callee"][part]]),
            _iso(day_start + batch["t"][part].astype(np.int64)),
            np.round(batch["ring"][part], 1).tolist(),
            batch["talk"][part].astype(np.int64).tolist(),
            np.where(batch["answered"][part], "1", "0").tolist(),
            np.where(batch["incoming"][part], "in", "out").tolist(),
            present.tolist(),
            _VERIFICATION_ARRAY[batch["verification"][part]].tolist(),
        )
        handle.write("".join([f"{a},{b},{c},{d},{e},{f},{g},{h},{i}\n"
                              for a, b, c, d, e, f, g, h, i in zip(*columns)]))


def _write_truth(handle, population: Population) -> int:
    w = csv.writer(handle, lineterminator="\n")
    w.writerow(("number", "role", "category", "harmful", "first_day", "last_day", "company"))
    n = 0
    for row in population.truth_rows():
        w.writerow(row)
        n += 1
    return n


def _write_rows(handle, header, rows) -> int:
    w = csv.writer(handle, lineterminator="\n")
    w.writerow(header)
    n = 0
    for row in rows:
        w.writerow(row)
        n += 1
    return n


@click.command("simulate")
@click.option("--days", type=int, default=14, show_default=True, help="Days to simulate.")
@click.option("--users", type=int, default=1000, show_default=True,
              help="Handset-app users who tag calls.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed (output is a "
              "deterministic function of all options).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True,
              help="Output directory (created if missing).")
@click.option("--calls-per-day", type=int, default=None,
              help="Target call records per day (sets the number of subscribers).")
@click.option("--subscribers", type=int, default=None, help="Carrier lines (default 2 x users).")
@click.option("--fake-blocs", type=int, default=2, show_default=True,
              help="Blocs of fresh fake accounts tagging honest numbers.")
@click.option("--fake-bloc-size", type=int, default=30, show_default=True)
@click.option("--colluder-blocs", type=int, default=0, show_default=True,
              help="Blocs of aged accounts that collude.")
@click.option("--start", default="2026-03-02", show_default=True, help="First day (local date).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def command(days, users, seed, out_dir, calls_per_day, subscribers, fake_blocs, fake_bloc_size,
            colluder_blocs, start, quiet, as_json):
    """Simulate a crowd: callers with ground truth, call records and user tags.

    Example: callmark simulate --days 5 --users 800 --seed 1 --out var/sim
    """
    try:
        summary = simulate(out_dir, days, users, seed, progress=not quiet,
                           calls_per_day=calls_per_day, subscribers=subscribers,
                           fake_blocs=fake_blocs, fake_bloc_size=fake_bloc_size,
                           colluder_blocs=colluder_blocs, start=start)
    except SimulationError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(summary, ensure_ascii=False))
        return
    click.echo(f"wrote {out_dir}: {summary['calls']:,} calls, {summary['tags']:,} tags, "
               f"{summary['numbers']:,} numbers ({summary['harmful_numbers']:,} harmful), "
               f"{summary['appeals']} appeals, {summary['recycled']} recycled, "
               f"{summary['seconds']:.1f} s")
    for role, n in sorted(summary["calls_by_role"].items(), key=lambda kv: -kv[1]):
        click.echo(f"  {role:<17} {n:>10,} calls")
