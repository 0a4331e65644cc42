"""`callmark pack …`: build label packs and deltas, apply a delta, print figures (stable CLI)."""
from __future__ import annotations

import json
import os

import click

from callmark.errors import CallmarkError


def _fail(exc: Exception):
    raise click.ClickException(str(exc)) from None


@click.group("pack")
def command():
    """Label packs: build, delta, apply, install, compact, stats.

    Example: callmark pack build --labels var/demo/builds/v2/labels.csv --version 3 --out var/packs/v3
    """


@command.command("build")
@click.option("--labels", "labels", required=True, type=click.Path(dir_okay=False),
              help="Consensus LABELS.csv (ranges are read from <stem>.ranges.csv if present).")
@click.option("--version", "version", required=True, type=click.IntRange(min=0), help="Pack version N.")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Output directory.")
@click.option("--region", default="CN", show_default=True,
              help="ISO country of the packs, or several (US,DE): one pack set per region. Labels "
                   "of any other region are refused.")
@click.option("--lite-budget", default=512 * 1024, show_default=True, type=click.IntRange(min=1024),
              help="Wire bytes the lite pack may use.")
@click.option("--no-lite", is_flag=True, help="Skip the lite pack.")
@click.option("--no-provinces", is_flag=True, help="Skip the per-province packs.")
@click.option("--built-at", default=None, help="ISO time to record (default: now).")
def build_cmd(labels, version, out, region, lite_budget, no_lite, no_provinces, built_at):
    """Build full, lite and province packs (SQLite + wire form) from LABELS.csv.

    Example: callmark pack build --labels var/labels.csv --version 4 --out var/packs/v4
    """
    from trainer.packs import PackConfig
    from trainer.pack_regions import build_region_packs, read_region_labels
    regions = [r.strip().upper() for r in region.split(",") if r.strip()]
    try:
        tables = {r: read_region_labels(labels, r, allowed=regions) for r in regions}
        cfg = PackConfig(region=regions[0], lite=not no_lite, lite_budget_bytes=lite_budget,
                         provinces=not no_provinces)
        idx = build_region_packs(tables, version, out, cfg, built_at=built_at)
    except (CallmarkError, OSError) as exc:
        _fail(exc)
    for p in idx["packs"]:
        click.echo(f"{p['name']}: {p['entries']} entries, wire {p['wire_bytes']} B "
                   f"({p['wire_bytes'] / max(1, p['entries']):.2f} B/entry), sqlite {p['sqlite_bytes']} B")
    click.echo(f"wrote {os.path.join(out, 'index.json')}")


@command.command("delta")
@click.option("--old", "old", required=True, type=click.Path(file_okay=False), help="Pack directory A.")
@click.option("--new", "new", required=True, type=click.Path(file_okay=False), help="Pack directory B.")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Delta directory.")
def delta_cmd(old, new, out):
    """Write deltas from version A to B for every pack in both directories.

    Example: callmark pack delta --old var/packs/v3 --new var/packs/v4 --out var/deltas/v3-v4
    """
    from trainer.packs import make_deltas
    try:
        idx = make_deltas(old, new, out)
    except (CallmarkError, OSError) as exc:
        _fail(exc)
    for d in idx["deltas"]:
        click.echo(f"{d['name']}: {d['bytes']} B, {d['upserts']} upserts, {d['removals']} removals")
    click.echo(f"wrote {os.path.join(out, 'index.json')}")


def _find_delta(pack_meta: dict, delta: str) -> tuple[str, dict | None]:
    if not os.path.isdir(delta):
        return delta, None
    from trainer.packs import read_index
    idx = read_index(delta)
    for d in idx.get("deltas", []):
        if d["name"] == pack_meta.get("name") and d["from_state_hash"] == pack_meta.get("state_hash"):
            return os.path.join(delta, d["file"]), d
    for d in idx.get("deltas", []):
        if d["name"] == pack_meta.get("name"):
            return os.path.join(delta, d["file"]), d
    raise click.ClickException(f"{delta} has no delta for pack {pack_meta.get('name')!r}")


@command.command("apply")
@click.option("--pack", "pack", required=True, type=click.Path(),
              help="Pack .sqlite file (rewritten whole), or a layered pack directory (only an overlay "
                   "is rewritten; see `pack install`).")
@click.option("--delta", "delta", required=True, type=click.Path(),
              help="Delta directory (or one .delta blob).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def apply_cmd(pack, delta, as_json):
    """Apply a delta to a pack atomically and verify its state hash.

    The pack (a single file or a layered pack directory) is checked in full first (SQLite integrity,
    every row rehashed against its stored state hash): a pack whose rows were edited behind its meta
    table is refused, not patched.

    Example: callmark pack apply --pack var/packs/v3/CN-full-v3.sqlite --delta var/deltas/v3-v4
    """
    from callmark import pack_layers
    from callmark.pack import apply_delta, read_pack_meta, verify_pack
    layered = pack_layers.is_layered(pack)
    try:
        if layered:
            meta = pack_layers.verify(pack)
        else:
            read_pack_meta(pack)        # "not a callmark pack" before any deeper check
            meta = verify_pack(pack)
        blob, entry = _find_delta(meta, delta)
        fn = pack_layers.apply_delta if layered else apply_delta
        new = fn(pack, blob, expected_state_hash=entry and entry["to_state_hash"],
                 expected_sha256=entry and entry["sha256"])
    except (CallmarkError, OSError) as exc:
        _fail(exc)
    out = {"pack": pack, "version": int(new["version"]), "entries": int(new["entries"]),
           "state_hash": new["state_hash"]}
    if layered:
        out["layer"] = new["layer"]
    _say(out, as_json, f"applied: {pack} is v{out['version']}, {out['entries']:,} entries, state hash "
                       f"{out['state_hash'][:16]}… verified" + (f" (written to the {out['layer']} layer)" if layered else ""))


def _say(out: dict, as_json: bool, sentence: str) -> None:
    click.echo(json.dumps(out) if as_json else sentence)


@command.command("install")
@click.option("--wire", "wire", required=True, type=click.Path(dir_okay=False, exists=True),
              help="A full pack's wire blob (.pack).")
@click.option("--pack", "pack", required=True, type=click.Path(file_okay=False),
              help="Layered pack directory to create or replace (base + overlays + HEAD).")
@click.option("--state-hash", default=None, help="State hash the pack must have (e.g. the manifest's).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def install_cmd(wire, pack, state_hash, as_json):
    """Expand a full pack into a layered pack directory, as a phone keeps it (new base, no overlays).

    Example: callmark pack install --wire var/packs/v3/CN-full-v3.pack --pack var/phone-pack/CN-full
    """
    from callmark import pack_layers
    try:
        meta = pack_layers.install_full(wire, pack, expected_state_hash=state_hash)
    except (CallmarkError, OSError) as exc:
        _fail(exc)
    out = {"pack": pack, "version": int(meta["version"]), "entries": int(meta["entries"]),
           "state_hash": meta["state_hash"]}
    _say(out, as_json, f"installed: {pack} is v{out['version']}, {out['entries']:,} entries, state hash "
                       f"{out['state_hash'][:16]}… verified")


@command.command("compact")
@click.option("--pack", "pack", required=True, type=click.Path(file_okay=False, exists=True),
              help="Layered pack directory.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def compact_cmd(pack, as_json):
    """Merge a layered pack's overlays into a new base now (same state; deltas do it by policy).

    Example: callmark pack compact --pack var/phone-pack/CN-full
    """
    from callmark import pack_layers
    try:
        head = pack_layers.compact(pack)
    except (CallmarkError, OSError) as exc:
        _fail(exc)
    out = {"pack": pack, "generation": head["generation"], "files": head["files"], "bytes": head["bytes"],
           "state_hash": head["meta"]["state_hash"]}
    _say(out, as_json, f"compacted: {pack} is one base ({', '.join(out['files'])}), generation "
                       f"{out['generation']}, state hash {out['state_hash'][:16]}… unchanged")


@command.command("stats")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.argument("path", type=click.Path(exists=True))
def stats_cmd(as_json, path):
    """Figures of a pack directory, a delta directory, a .sqlite pack or a wire blob.

    Example: callmark pack stats --json var/packs/v3
    """
    from trainer.packs import stats
    try:
        st = stats(path)
    except (CallmarkError, OSError) as exc:
        _fail(exc)
    if as_json:
        click.echo(json.dumps(st, ensure_ascii=False))
        return
    for k, v in st.items():
        if k not in ("packs", "deltas"):
            click.echo(f"{k}: {v}")
    for p in st.get("packs", []) + st.get("deltas", []):
        click.echo(f"  {p['name']}: {p.get('entries')} entries, {p.get('wire_bytes', p.get('bytes'))} B")
