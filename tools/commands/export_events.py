"""`callmark export-events`: the store's tag events -> Parquet partitioned by UTC day."""
from __future__ import annotations

import json

import click


@click.command("export-events")
@click.option("--data-dir", default="var", show_default=True,
              help="The server's data dir (SQLite store); CALLMARK_DATABASE_URL=postgresql://… "
                   "selects PostgreSQL instead, as for the server.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Output directory: day=YYYY-MM-DD/part-*.parquet (Hive-style partitions).")
@click.option("--include-flagged", is_flag=True,
              help="Also export events stored past a reporter's daily cap.")
def command(data_dir, out_dir, include_flagged):
    """Export tag events as a day-partitioned Parquet data set (input of --engine spark).

    Example:

      callmark export-events --data-dir var/demo/store --out var/lake/tags

    then `callmark consensus --engine spark --tags var/lake/tags …` reads it.
    """
    from server.store_errors import StoreError
    from trainer.sources import SourceError, export_events
    try:
        summary = export_events(data_dir, out_dir, include_flagged=include_flagged)
    except (SourceError, StoreError) as exc:
        raise click.ClickException(str(exc))
    click.echo(json.dumps(summary))
