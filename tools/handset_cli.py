"""`callmark handset …`: the thin click layer over tools.handset.Handset (the library never imports
this module: the arrow runs from the CLI to the library only)."""
from __future__ import annotations

import functools
import json
from datetime import datetime, timezone

import click

from callmark.errors import CallmarkError
from callmark.manifest_errors import ManifestError
from callmark.rules import VERIFICATION
from tools.handset import Handset
from tools.handset_store import LIST_KINDS


def _handset(ctx: click.Context, remember: bool = False):
    o = ctx.obj
    h = Handset(o["state"], o["server"], root=o["root"], tofu=o["tofu"], channel=o["channel"],
                region=o["region"], remember=remember)
    if h.created:  # said once the command has done its work (an error stays one line)
        c = h.saved_config
        o["created_note"] = (f"new handset state in {o['state']}: server {c.server_url or '(none)'}, channel "
                             f"{c.channel}, region {c.region} (change with: callmark handset --state {o['state']} "
                             f"--server URL config --save)")
    return h


def _errors(fn):
    """Turn library errors into one-line CLI errors (no traceback)."""
    @functools.wraps(fn)
    def wrapper(*a, **kw):
        try:
            result = fn(*a, **kw)
        except (CallmarkError, ManifestError, OSError) as e:
            raise click.ClickException(f"{type(e).__name__}: {e}") from None
        note = (click.get_current_context().obj or {}).pop("created_note", None)
        if note:
            click.echo(note, err=True)
        return result
    return wrapper


def _out(obj: dict, as_json: bool, text: str) -> None:
    click.echo(json.dumps(obj, indent=1, ensure_ascii=False, default=str) if as_json else text)


def _when(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ") if t else "-"


@click.group("handset")
@click.option("--state", "state", default="./var/handset", show_default=True, envvar="CALLMARK_HANDSET_STATE",
              type=click.Path(file_okay=False), help="Handset state directory (created on first use).")
@click.option("--server", "server", default=None, envvar="CALLMARK_SERVER",
              help="Sync server URL (http://HOST:PORT) or an exports/ mirror directory. Saved when the state "
                   "is created; later, for this command only (`config --save` keeps it).")
@click.option("--root", "root", default=None, type=click.Path(dir_okay=False),
              help="Trusted root.json shipped with the app (needed on the first sync).")
@click.option("--trust-on-first-use", "tofu", is_flag=True,
              help="No --root: trust the server's root v1 on the first sync (demo only).")
@click.option("--channel", default=None,
              help="Release channel (default stable). Saved when the state is created; `config --save` changes it.")
@click.option("--region", default=None,
              help="Phone region, ISO code (default CN). Saved when the state is created; `config --save` changes "
                   "it; given to label/tag alone it reads the number in that region for this command only.")
@click.pass_context
def command(ctx, state, server, root, tofu, channel, region):
    """The reference handset client: sync packs, label calls offline, queue and upload tags.

    Settings (server, channel, region) are saved when the state directory is created; a flag given
    later applies to that one command (`config --save` changes the saved settings).

    Example: callmark handset --state var/phone --server exports --root exports/root/1.root.json sync
    """
    ctx.obj = {"state": state, "server": server, "root": root, "tofu": tofu, "channel": channel,
               "region": region}


@command.command("sync")
@click.option("--force", is_flag=True, help="Ignore the server's wait hint and back-off timer.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
@_errors
def sync_cmd(ctx, force, as_json):
    """Fetch and verify the signed manifest, then a delta or the full pack, and the model.

    Example: callmark handset --state var/phone sync --force
    """
    with _handset(ctx) as h:
        r = h.sync(force=force)
    text = (f"{r.status}: manifest v{r.manifest_version}, pack {r.pack or '-'} v{r.pack_version_before}"
            f" -> v{r.pack_version}, {r.deltas_applied} delta(s), {r.bytes_downloaded} bytes, model {r.model or '-'}"
            + (f"\nfallback to full pack: {r.fallback}" if r.fallback else "")
            + (f"\nerror: {r.error}" if r.error else "")
            + (f"\nhint: the server offers an older release than this phone already trusts (a rollback attack, "
               f"or a release line that was started again); a phone never goes back: for a new line on purpose, "
               f"sync a fresh phone with another --state" if r.error.startswith("RollbackError") else "")
            + f"\nnext sync after {_when(r.next_sync_after)} (in {r.wait_s:.0f} s)")
    _out(r.to_dict(), as_json, text)
    if r.status in ("failed", "offline"):
        ctx.exit(1)


@command.command("label")
@click.argument("number")
@click.option("--ring-s", type=float, default=None, help="Seconds the call rang (after the call).")
@click.option("--answered/--not-answered", default=None, help="Whether the call was picked up.")
@click.option("--in-contacts", is_flag=True, help="The caller is in the user's contacts.")
@click.option("--time", "when", default=None, help="Call time, ISO-8601 or epoch seconds (default now).")
@click.option("--verification", type=click.Choice(VERIFICATION), default="none", show_default=True,
              help="Network caller verification status.")
@click.option("--record/--no-record", default=False, show_default=True,
              help="Also record the call in the local call history (as a real incoming call would be); "
                   "a lookup leaves the history alone.")
@click.option("--json", "as_json", is_flag=True, help="Print the decision as JSON.")
@click.pass_context
@_errors
def label_cmd(ctx, number, ring_s, answered, in_contacts, when, verification, record, as_json):
    """Decide allow / label / warn / silence / reject for a call, offline, with the reasons.

    A lookup by default: the call is recorded in the local history (which the call-bombing and
    one-ring rules count) only with --record.

    An empty NUMBER ('') is a hidden caller; text that holds no digit at all is refused (a network
    never presents one), so a typo is not scored as a call.

    Example: callmark handset --state var/phone label +8613812345678 --ring-s 1.5 --not-answered
    """
    if number.strip() and not any(ch.isdigit() for ch in number):
        raise click.BadParameter(f"{number!r} holds no digit: pass the caller's number as the network presents "
                                 "it (e.g. +8613812345678, 95588), or '' for a hidden caller", param_hint="NUMBER")
    with _handset(ctx) as h:
        d = h.label(number, ring_s=ring_s, answered=answered, in_contacts=in_contacts, time=when,
                    verification=verification, record=record)
        no_pack = not h.has_pack
    text = (f"{d.action.upper()}" + (f"  {d.category}" if d.category else "")
            + (f"  ({d.company})" if d.company else "") + f"  confidence {d.confidence:.2f}"
            + "".join(f"\n  - [{r.step}] {r.detail}" for r in d.reasons)
            + ("\n  offer: tag this number" if d.offer_tag else ""))
    _out(d.to_dict(), as_json, text)
    if no_pack:  # after the answer: stderr, so --json output stays one JSON document
        click.echo(f"note: {ctx.obj['state']} has no label pack yet, so only the lists and rules decide; "
                   f"run `callmark handset --state {ctx.obj['state']} sync` first", err=True)


@command.command("tag")
@click.argument("number")
@click.argument("category")
@click.option("--company", default=None, help="Company name, if known.")
@click.option("--note", default=None, help="What was said.")
@click.option("--ring-s", type=float, default=None, help="Seconds it rang.")
@click.option("--talk-s", type=float, default=None, help="Seconds talked.")
@click.option("--time", "when", default=None, help="Time of the call, ISO-8601 (default now).")
@click.pass_context
@_errors
def tag_cmd(ctx, number, category, company, note, ring_s, talk_s, when):
    """Queue a tag for NUMBER (works offline; `upload` sends the queue).

    Example: callmark handset --state var/phone tag +8613812345678 real_estate --company 安居房产
    """
    with _handset(ctx) as h:
        eid = h.tag(number, category, company=company, note=note, ring_s=ring_s, talk_s=talk_s, time=when)
        n = h.store.tag_counts()["pending"]
    click.echo(f"queued {eid} ({n} pending)")


@command.command("upload")
@click.option("--batch", "batch", type=click.IntRange(1, 500), default=500, show_default=True,
              help="Events per request.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
@_errors
def upload_cmd(ctx, batch, as_json):
    """Upload queued tags in batches (idempotent event ids, retries with backoff).

    Example: callmark handset --state var/phone --server http://127.0.0.1:8080 upload
    """
    with _handset(ctx) as h:
        r = h.upload(batch)
    _out(r, as_json, f"{r['status']}: sent {r['sent']} in {r['batches']} batch(es), stored {r['stored']}, "
                     f"duplicates {r['duplicates']}, rejected {r['rejected']}, pending {r['pending']}"
                     + (f"\nerror: {r['error']}" if r["error"] else ""))
    if r["status"] != "ok":
        ctx.exit(1)


@command.command("replay")
@click.argument("calls_csv", type=click.Path(exists=True, dir_okay=False))
@click.option("--truth", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Simulator truth.csv: also report accuracy.")
@click.option("--limit", type=click.IntRange(1), default=None, help="Label at most this many calls.")
@click.option("--history", "history", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Earlier calls (same CSV form) to build the phone's call log from first, unscored, as "
                   "`make demo` does on day 1 (the rules and the model's local facts read that log).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_context
@_errors
def replay_cmd(ctx, calls_csv, truth, limit, history, as_json):
    """Label a stream of calls (simulator calls.csv) and print a summary with timings.

    The phone's call log matters: a state directory replayed twice, or without the earlier calls the
    demo gave it (--history), decides differently from the demo's summary.

    Example: callmark handset --state var/phone replay var/demo/calls-day2.csv --truth var/demo/sim/truth.csv
    """
    with _handset(ctx) as h:
        r = h.replay(calls_csv, limit=limit, truth_csv=truth, history_csv=history)
    lat = r["latency"]
    lines = [f"{r['calls']} calls in {r['seconds']} s ({r['calls_per_s']}/s); decision p50 {lat['p50_us']} µs, "
             f"p99 {lat['p99_us']} µs", "actions: " + ", ".join(f"{k} {v}" for k, v in r["actions"].items()),
             "by path: " + ", ".join(f"{k} p50 {v['p50_us']} / p99 {v['p99_us']} µs"
                                     for k, v in r["latency_by_source"].items())]
    if "accuracy" in r:
        lines.append("accuracy: " + ", ".join(f"{k} {v}" for k, v in r["accuracy"].items()))
    _out(r, as_json, "\n".join(lines))


@command.command("status")
@click.pass_context
@_errors
@click.option("--json", "as_json", is_flag=True, help="Print the whole state as JSON (epoch seconds).")
def status_cmd(ctx, as_json):
    """Show the state: config, last syncs, pack, model, lists and tag queue.

    Example: callmark handset --state var/phone status
    """
    with _handset(ctx) as h:
        st = h.status()
    _out(st, as_json, status_text(st))


def status_text(st: dict) -> str:
    """`handset status` for a person: one line per part, times in UTC."""
    c, s, p = st["config"], st["sync"], st.get("pack")
    lines = [f"state     {st['state_dir']}",
             f"settings  server {c.get('server_url') or '(none)'}, channel {c.get('channel')}, region "
             f"{c.get('region')}, pack tier {c.get('pack_tier')}, device {c.get('device_id')}"]
    if p:
        layers = p.get("layers") or {}
        rows = ", ".join(f"{k} {v:,}" for k, v in (layers.get("rows") or {}).items())
        lines.append(f"pack      {p.get('name')} v{p.get('version')}, {int(p.get('entries') or 0):,} entries"
                     + (f" ({rows})" if rows else "") + f", built {p.get('built_at')}")
    else:
        lines.append("pack      none yet: run `sync`")
    mi = st.get("model_info") or {}
    model = st.get("model") or "none"
    if mi:
        warn = f"{mi['warn_risk']:.3f}" if mi.get("warn_risk") is not None else "the policy default"
        model += f" ({mi['bytes']:,} bytes, {mi.get('classes', '?')} classes, warns at risk >= {warn})"
    lines.append(f"model     {model}")
    lines.append(f"sync      manifest v{s.get('manifest_version')}, last success {_when(s.get('last_success'))}, "
                 f"next after {_when(s.get('next_sync_after'))}, failures {s.get('failures', 0)}"
                 + (f", last error: {s['last_error']}" if s.get("last_error") else ""))
    for r in st.get("last_syncs") or []:
        lines.append(f"          {_when(r.get('t'))}  {r.get('status')}  manifest v{r.get('manifest')}  pack "
                     f"v{r.get('pack_version')}  {int(r.get('bytes') or 0):,} bytes"
                     + (f"  ({r['fallback']})" if r.get("fallback") else "")
                     + (f"  error: {r['error']}" if r.get("error") else ""))
    lines.append("lists     " + ", ".join(f"{k} {v:,}" for k, v in st["lists"].items()))
    lines.append("tags      " + ", ".join(f"{k} {v:,}" for k, v in st["tags"].items()))
    return "\n".join(lines)


@command.command("config")
@click.option("--save", is_flag=True,
              help="Save the --server/--channel/--region given to `callmark handset` as the phone's settings.")
@click.pass_context
@_errors
def config_cmd(ctx, save):
    """Show the handset's saved settings, or save new ones with --save.

    Example: callmark handset --state var/phone config
    """
    with _handset(ctx, remember=save) as h:
        c = h.saved_config
    click.echo(json.dumps({"state": ctx.obj["state"], "server_url": c.server_url, "channel": c.channel,
                           "region": c.region, "pack_tier": c.pack_tier, "device_id": c.device_id,
                           "registered": bool(c.token)}, indent=1))


@command.command("list")
@click.argument("op", type=click.Choice(["add", "remove", "show"]))
@click.argument("kind", type=click.Choice(LIST_KINDS), required=False)
@click.argument("number", required=False)
@click.option("--name", default=None, help="Contact name.")
@click.pass_context
@_errors
def list_cmd(ctx, op, kind, number, name):
    """Edit the user's contacts / allow / block lists (checked before anything else).

    Example: callmark handset --state var/phone list add block +8613812345678
    """
    with _handset(ctx) as h:
        if op == "show":
            for row in h.store.list_rows():
                click.echo(f"{row['kind']:8} {row['raw']}" + (f"  {row['name']}" if row["name"] else ""))
            return
        if not kind or not number:
            raise click.UsageError("give KIND (contact|allow|block) and NUMBER")
        if op == "add":
            h.list_add(kind, number, name)
            click.echo(f"added {number} to {kind}")
        else:
            click.echo(f"removed {number} from {kind}" if h.list_remove(kind, number) else f"{number} was not on {kind}")
