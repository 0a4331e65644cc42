"""`callmark import KIND PATH --out EVENTS.jsonl`: a real report stream -> tag events (trainer/imports.py)."""
from __future__ import annotations

import json

import click


@click.command("import")
@click.argument("kind", type=click.Choice(["ftc-dnc", "phoneblock", "csv", "jsonl"]))
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="Events JSONL to write (every line has source and event_id).")
@click.option("--region", default=None,
              help="Region the numbers are dialled from (default: US for ftc-dnc, DE for phoneblock, CN otherwise).")
@click.option("--map", "mapping", multiple=True,
              help="FIELD=COLUMN pairs, e.g. number=caller,category=kind,ts=time,reporter=user.")
@click.option("--category", default=None, help="Fixed category key for every row (e.g. telemarketing).")
@click.option("--reporter-prefix", default=None,
              help="Prefix of reporter ids; without a reporter column every row is its own reporter.")
@click.option("--profile", "source", default=None,
              help="Source profile stored on every event (app, ftc-dnc, phoneblock); default: the kind's, app for csv/jsonl.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON only.")
def command(kind, path, out, region, mapping, category, reporter_prefix, source, as_json):
    """Import a report stream as tag events with a source profile.

    Bad rows are counted by reason with their line numbers (irregular numbers such as +1833 are
    counted, never imported). Examples:

    \b
      callmark import ftc-dnc ../shared/data/ftc-dnc/complaint_numbers_by_day.csv.gz --out var/ftc.jsonl

    \b
      callmark import phoneblock ../shared/data/phoneblock-de/blocklist_votes_2026-05.csv --out var/phoneblock.jsonl

    \b
      callmark import csv var/demo/calls-day2.csv --out var/r.jsonl --map number=caller,ts=start --category fraud --reporter-prefix r:
    """
    from trainer.imports import SourceImportError, import_events, parse_map
    from callmark.sources import SourceProfileError

    region = region or {"ftc-dnc": "US", "phoneblock": "DE"}.get(kind, "CN")
    try:
        res = import_events(kind, path, out, region=region.upper(), columns=parse_map(mapping),
                            category=category, reporter_prefix=reporter_prefix, source=source)
    except (SourceImportError, SourceProfileError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(res.to_dict()))
        return
    click.echo(res.report.format(path))
    click.echo(f"{res.events:,} events ({res.source}) -> {out}"
               + (f"; {res.duplicates:,} duplicate event ids written once" if res.duplicates else "")
               + f" in {res.seconds:.1f} s")
