"""`callmark publish/promote/rollback/rollout/resign/gc/verify/history` and `callmark keys init/rotate`."""
from __future__ import annotations

import json
from functools import wraps

import click

EXPORTS = click.option("--exports", "exports", default="exports", show_default=True,
                       type=click.Path(file_okay=False), help="Exports directory (what the server/CDN serves).")
KEYS_ENV = ["CALLMARK_KEYS_DIR", "CALLMARK_KEYS"]  # the server's CALLMARK_KEYS_DIR names the same directory
KEYS = click.option("--keys", "keys", default="./var/keys", show_default=True, envvar=KEYS_ENV, show_envvar=True,
                    type=click.Path(file_okay=False),
                    help="Signing keys directory (demo keys; see docs/security.md).")
EXPIRES = click.option("--expires-days", default=7.0, show_default=True, type=click.FloatRange(min=0.01),
                       help="Days until the signed manifest expires (clients refuse it afterwards).")


def _friendly(fn):
    """Turn library errors into one clear line and exit status 1, never a traceback."""
    @wraps(fn)
    def run(*a, **kw):
        from callmark.manifest_errors import ManifestError
        try:
            return fn(*a, **kw)
        except ManifestError as e:
            raise click.ClickException(f"{type(e).__name__}: {e}") from None
        except OSError as e:
            raise click.ClickException(f"{e.strerror or e}: {e.filename or ''}") from None
    return run


def _say(m, verb: str) -> None:
    model = f", model {m.model.sha256[:12]}… at {m.model.rollout_percent:g}%" if m.model else ", no model"
    regions = ",".join(sorted({p.region for p in m.packs})) or "none"
    click.echo(f"{verb} {m.channel} v{m.version}: {len(m.packs)} pack(s) (regions {regions}), {len(m.deltas)} delta(s){model}; "
               f"expires {m.expires:%Y-%m-%d %H:%M}Z")


@click.command("publish")
@EXPORTS
@KEYS
@click.option("--build", "build_dir", type=click.Path(exists=True, file_okay=False),
              help="A build directory from `callmark build` (its packs, deltas and model).")
@click.option("--packs", "pack_dir", type=click.Path(exists=True, file_okay=False),
              help="Pack directory with index.json (from `callmark pack build`). Omit to keep the current packs.")
@click.option("--delta", "delta_dirs", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="Delta directory with index.json (repeatable).")
@click.option("--model", "model_dir", type=click.Path(exists=True, file_okay=False),
              help="Model directory (model.tflite, contract.json, test_vectors.json...). "
                   "Omit to keep the current model.")
@click.option("--channel", default="beta", show_default=True, help="Channel to publish to.")
@click.option("--version", type=click.IntRange(min=1), help="Manifest version (default: next).")
@click.option("--percent", "rollout_percent", type=click.FloatRange(0, 100),
              help="Staged rollout: percent of devices that take a new model (default 100).")
@click.option("--note", default="", help="Free text recorded in history.jsonl.")
@click.option("--replace-regions", is_flag=True,
              help="Drop the channel's packs of regions this release does not carry (default: keep them).")
@EXPIRES
@_friendly
def publish_cmd(exports, keys, build_dir, pack_dir, delta_dirs, model_dir, channel, version, rollout_percent,
                note, replace_regions, expires_days):
    """Publish packs, deltas and a model as a signed release of a channel.

    The release's regions are added or updated; other regions' packs stay.

    Example: callmark publish --build var/demo/builds/v2
    callmark publish --packs var/demo/builds/v2/packs --delta var/demo/builds/v2/deltas/from-v1 --model var/demo/builds/v2/model --channel beta
    """
    from publisher import publish_release
    if build_dir:
        from trainer.pipeline import BuildError, BuildResult
        try:
            built = BuildResult.load(build_dir)
        except BuildError as exc:
            raise click.ClickException(str(exc)) from None
        pack_dir = pack_dir or built.pack_dir
        delta_dirs = tuple(delta_dirs) or tuple(built.delta_dirs)
        model_dir = model_dir or built.model_dir
        note = note or f"build v{built.version}"
    m = publish_release(exports, pack_dir, delta_dirs, model_dir, channel, keys, version=version,
                        expires_days=expires_days, rollout_percent=rollout_percent, note=note,
                        replace_regions=replace_regions)
    _say(m, "published")


@click.command("promote")
@EXPORTS
@KEYS
@click.option("--from", "from_channel", default="beta", show_default=True, help="Source channel.")
@click.option("--to", "to_channel", default="stable", show_default=True, help="Target channel.")
@click.option("--percent", "rollout_percent", type=click.FloatRange(0, 100),
              help="Staged rollout of the promoted model (default 100).")
@EXPIRES
@_friendly
def promote_cmd(exports, keys, from_channel, to_channel, rollout_percent, expires_days):
    """Promote a channel's current release to another channel (a new, higher version there).

    Example: callmark promote --from beta --to stable --percent 10
    """
    from publisher import promote
    m = promote(exports, keys, from_channel, to_channel, rollout_percent, expires_days)
    _say(m, "promoted to")
    if rollout_percent is not None and not m.model:
        click.echo(f"note: --percent {rollout_percent:g} changed nothing: {from_channel} has no model to stage",
                   err=True)


@click.command("rollout")
@EXPORTS
@KEYS
@click.option("--channel", default="stable", show_default=True)
@click.option("--percent", required=True, type=click.FloatRange(0, 100),
              help="Percent of devices (by stable device bucket) that take the channel's model; 0 halts.")
@EXPIRES
@_friendly
def rollout_cmd(exports, keys, channel, percent, expires_days):
    """Change the staged-rollout percent of a channel's model (publishes a new version).

    Example: callmark rollout --channel stable --percent 50
    """
    from publisher import set_rollout
    _say(set_rollout(exports, keys, channel, percent, expires_days), "rolled out")


@click.command("rollback")
@EXPORTS
@KEYS
@click.option("--channel", default="stable", show_default=True)
@click.option("--to-version", type=click.IntRange(min=1),
              help="Version whose artefacts to serve again (default: the previous different release).")
@EXPIRES
@_friendly
def rollback_cmd(exports, keys, channel, to_version, expires_days):
    """Roll a channel back: a new, higher version pointing at an older release's artefacts.

    Example: callmark rollback --channel stable
    """
    from publisher import rollback
    _say(rollback(exports, keys, channel, to_version, expires_days), "rolled back")


@click.command("resign")
@EXPORTS
@KEYS
@click.option("--channel", "chans", multiple=True, help="Channel(s) to re-sign (default: all).")
@EXPIRES
@_friendly
def resign_cmd(exports, keys, chans, expires_days):
    """Re-sign channels with a fresh expiry (run daily: manifests expire after a week).

    Example: callmark resign --exports exports
    """
    from publisher import resign
    for m in resign(exports, keys, chans or None, expires_days):
        _say(m, "re-signed")


@click.command("gc")
@EXPORTS
@click.option("--window-versions", default=5, show_default=True, type=click.IntRange(min=1),
              help="Keep artefacts of each channel's last N versions.")
@click.option("--window-days", default=14.0, show_default=True, type=click.FloatRange(min=0),
              help="Keep artefacts of versions published in the last D days.")
@click.option("--dry-run", is_flag=True, help="Only list what would be deleted.")
@_friendly
def gc_cmd(exports, window_versions, window_days, dry_run):
    """Delete artefacts outside the delta window; never one a live manifest references.

    Example: callmark gc --exports exports --window-versions 5 --dry-run
    """
    from publisher import collect_garbage
    r = collect_garbage(exports, window_versions, window_days, dry_run)
    for p in r["deleted"]:
        click.echo(("would delete " if dry_run else "deleted ") + p)
    click.echo(f"{len(r['deleted'])} artefact(s), {r['bytes_freed']} bytes; {r['kept']} referenced kept")


@click.command("verify")
@click.argument("exports_dir", default="exports", required=False, type=click.Path(exists=True, file_okay=False))
@click.option("--root", "root_file", type=click.Path(exists=True, dir_okay=False),
              help="Trusted root to start from (default EXPORTS_DIR/root/1.root.json).")
def verify_cmd(exports_dir, root_file):
    """Verify an exports dir (default: exports) from the root of trust; exit 1 naming each problem.

    Example: callmark verify exports --root exports/root/1.root.json
    """
    from callmark.updater import verify_exports
    r = verify_exports(exports_dir, root_file)
    for p in r.problems:
        click.echo(f"FAIL {p}", err=True)
    chans = ", ".join(f"{c} v{v}" for c, v in sorted(r.channels.items())) or "none"
    click.echo(f"root v{r.root_version}; channels: {chans}; {r.artefacts_checked} artefact(s) checked; "
               f"{'OK' if r.ok else f'{len(r.problems)} problem(s)'}")
    if not r.ok:
        raise SystemExit(1)


@click.command("history")
@EXPORTS
@click.option("--channel", help="Only this channel.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@_friendly
def history_cmd(exports, channel, as_json):
    """Show the release history (publish, promote, rollback, rollout, resign, gc).

    Example: callmark history --channel stable
    """
    from callmark.exports import channels
    from publisher import history
    records = history(exports, channel)
    if not records and not as_json:  # say so (stderr): an empty answer looks like a hang or a typo
        have = channels(exports)
        click.echo(f"no release records{f' for channel {channel}' if channel else ''} in {exports}"
                   + (f" (channels: {', '.join(have)})" if have else " (nothing published yet)"), err=True)
    for r in records:
        if as_json:
            click.echo(json.dumps(r, sort_keys=True))
            continue
        click.echo(history_line(r))


def history_line(rec: dict) -> str:
    """One release-history record as a line a person reads (`callmark history`; `--json` keeps the record)."""
    head = f"{rec.get('ts', '?'):20} {rec.get('action', '?'):8}"
    if rec.get("action") == "gc":
        return f"{head} deleted {rec.get('deleted', 0)} file(s), {int(rec.get('bytes_freed', 0)):,} bytes freed"
    parts = [f"{rec.get('channel', '-')} v{rec.get('version', '-')}"]
    packs = rec.get("packs")
    if isinstance(packs, dict) and packs:
        parts.append("packs " + ", ".join(f"{name} v{v}" for name, v in sorted(packs.items())))
    if rec.get("model"):
        parts.append(f"model {rec['model']}" + (f" at {rec['rollout_percent']:g} %" if rec.get("rollout_percent")
                                                 is not None else ""))
    else:
        parts.append("no model")
    if rec.get("from_channel"):
        parts.append(f"from {rec['from_channel']} v{rec.get('from_version', '?')}")
    if rec.get("to_version"):
        parts.append(f"back to v{rec['to_version']}")
    if rec.get("note"):
        parts.append(f"note: {rec['note']}")
    return f"{head} {parts[0]:12} " + "; ".join(parts[1:])


@click.group("keys")
def keys_group():
    """Manage signing keys: offline root keys (m-of-n) and the online manifest key.

    Example: callmark keys init --dir var/new-keys --threshold 2 --roots 3
    """


@keys_group.command("init")
@click.option("--dir", "keys_dir", default="./var/keys", show_default=True, envvar=KEYS_ENV,
              type=click.Path(file_okay=False))
@click.option("--threshold", default=2, show_default=True, type=click.IntRange(min=1),
              help="Root signatures required (m).")
@click.option("--roots", default=3, show_default=True, type=click.IntRange(min=1), help="Root keys (n).")
@click.option("--force", is_flag=True, help="Replace existing keys (clients trusting them will break).")
@_friendly
def keys_init(keys_dir, threshold, roots, force):
    """Create root keys, an online key and root v1 (demo: keep root keys offline in production).

    Example: callmark keys init --dir var/other-keys --threshold 2 --roots 3
    """
    from publisher import init_keys
    r = init_keys(keys_dir, threshold, roots, force=force)
    click.echo(f"root v{r.version}: {threshold}-of-{roots} root keys, online key "
               f"{r.roles['manifest'].keyids[0][:16]}; expires {r.expires:%Y-%m-%d}. Ship "
               f"{keys_dir}/root/1.root.json in the app as the trusted root.")


@keys_group.command("rotate")
@click.option("--dir", "keys_dir", default="./var/keys", show_default=True, envvar=KEYS_ENV,
              type=click.Path(file_okay=False))
@click.option("--online/--no-online", default=True, show_default=True, help="Replace the online key.")
@click.option("--root", "rotate_root", is_flag=True,
              help="Replace the root keys too (old ones sign the handover).")
@click.option("--threshold", type=click.IntRange(min=1), help="New root threshold (m).")
@click.option("--roots", type=click.IntRange(min=1), help="New number of root keys (n), with --root.")
@click.option("--exports", type=click.Path(file_okay=False),
              help="Also publish the new root to this exports dir and re-sign its channels.")
@_friendly
def keys_rotate(keys_dir, online, rotate_root, threshold, roots, exports):
    """Write the next root version (new online and/or root keys, or just a renewed expiry).

    Example: callmark keys rotate --dir var/keys --exports exports
    """
    from publisher import rotate_keys, sync_keys
    r = rotate_keys(keys_dir, online=online, root=rotate_root, threshold=threshold, roots=roots)
    click.echo(f"root v{r.version}: {r.roles['root'].threshold}-of-{len(r.roles['root'].keyids)} root keys, "
               f"online key {r.roles['manifest'].keyids[0][:16]}; expires {r.expires:%Y-%m-%d}")
    if exports:
        sync_keys(exports, keys_dir)
        click.echo(f"published root v{r.version} to {exports} and re-signed its channels")


COMMANDS = {"publish": publish_cmd, "promote": promote_cmd, "rollback": rollback_cmd, "verify": verify_cmd,
            "history": history_cmd, "keys": keys_group, "rollout": rollout_cmd, "resign": resign_cmd,
            "gc": gc_cmd}
