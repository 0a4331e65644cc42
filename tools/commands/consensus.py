"""`callmark consensus`: tag events -> LABELS.csv (+ LABELS.ranges.csv). Thin layer over
trainer.consensus; the option names are a stable interface that outside checks call."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click


@click.command("consensus")
@click.option("--tags", "tags_path", required=True, type=click.Path(),
              help="Tag events: CSV (number,reporter,category,ts[,company,note,...]), JSONL, .gz of "
                   "either, or the server's SQLite store; --engine spark also Parquet (a file or "
                   "the directory `callmark export-events` writes).")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False),
              help="LABELS.csv to write; ranges go to <stem>.ranges.csv beside it.")
@click.option("--as-of", "as_of", default=None,
              help="Evaluate at this time (ISO-8601 or epoch seconds); later tags are ignored. "
                   "Default: the latest tag.")
@click.option("--min-reporters", type=click.IntRange(min=0), default=None,
              help="Independent reporters needed to publish (default 3).")
@click.option("--half-life-days", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Evidence half-life in days (default 125).")
@click.option("--min-confidence", type=click.FloatRange(0, 1), default=None,
              help="Calibrated confidence needed to publish (default 0.5).")
@click.option("--verified", type=click.Path(dir_okay=False), default=None,
              help="Verified businesses CSV: number,company.")
@click.option("--appeals", type=click.Path(dir_okay=False), default=None,
              help="Appeals CSV: number,categories,filed_ts,accepted.")
@click.option("--recycled", type=click.Path(dir_okay=False), default=None,
              help="Reissued numbers CSV: number,reissued_ts.")
@click.option("--region", default="CN", show_default=True,
              help="Region for numbers written without a country code (e.g. US).")
@click.option("--method", type=click.Choice(["em", "majority"]), default=None,
              help="em (default) or the majority-vote baseline.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="JSON config file, the format `callmark build --config` takes: consensus fields flat "
                   "or under \"consensus\" (build / pack fields in it are skipped); options above override it.")
@click.option("--engine", type=click.Choice(["numpy", "spark"]), default="numpy", show_default=True,
              help="numpy: in this process. spark: ingest and vote reduction on Apache Spark "
                   "(CSV/JSONL/Parquet files or a Parquet directory; same model and output).")
@click.option("--spark-master", default=None,
              help="Spark master URL for --engine spark (default local[*]; under spark-submit "
                   "the submitted session).")
@click.option("--json", "as_json", is_flag=True, help="Print the run summary as JSON.")
def command(tags_path, out_path, as_of, min_reporters, half_life_days, min_confidence, verified,
            appeals, recycled, region, method, config_path, engine, spark_master, as_json):
    """Turn tag events into one calibrated label per tagged number.

    Example:

      callmark consensus --tags var/demo/sim/tags.jsonl --out var/labels.csv
      --min-reporters 3 --half-life-days 125

      callmark consensus --engine spark --spark-master 'local[2]' --tags var/lake/tags
      --out var/labels-spark.csv
    """
    from callmark.progress import heartbeat
    from trainer import consensus as C
    from trainer import ingest as I

    t0 = time.perf_counter()
    try:
        cfg_dict = {}
        if config_path:
            try:
                cfg_dict = json.loads(Path(config_path).read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise click.ClickException(f"--config {config_path}: not a readable JSON file "
                                           f"({exc})")
        cfg_dict = _consensus_fields(cfg_dict, config_path) if config_path else {}
        for name, value in (("min_reporters", min_reporters), ("half_life_days", half_life_days),
                            ("min_confidence", min_confidence), ("method", method)):
            if value is not None:
                cfg_dict[name] = value
        cfg = C.ConsensusConfig.from_dict(cfg_dict)
        as_of_ts = C.parse_as_of(as_of) if as_of is not None else None
        if engine == "numpy":
            events, report = I.read_tags(tags_path, region=region)
        side = {}
        for name, path, reader in (("verified", verified, I.read_verified),
                                   ("appeals", appeals, I.read_appeals),
                                   ("recycled", recycled, I.read_recycled)):
            if path:
                side[name], rep = reader(path, region)
                if rep.bad:
                    click.echo(f"{name}: {rep.summary()}", err=True)
        t1 = time.perf_counter()
        if engine == "spark":
            from trainer import spark_engine as S
            try:
                result, report = S.consensus(tags_path, cfg, as_of=as_of_ts, region=region,
                                             master=spark_master, **side)
            except S.SparkEngineError as exc:
                raise click.ClickException(str(exc))
        else:
            with heartbeat(f"consensus over {len(events):,} tag events"):
                result = C.run(events, cfg, as_of=as_of_ts, **side)
        labels, ranges = result.write_csv(out_path)
    except (I.IngestError, C.ConsensusConfigError) as exc:
        raise click.ClickException(str(exc))
    except OSError as exc:
        raise click.ClickException(f"cannot write {out_path}: {exc}")
    t2 = time.perf_counter()
    summary = {"tags": report.to_dict(), "labels": str(labels), "ranges": str(ranges),
               "as_of": result.as_of, "stats": result.stats,
               "ranges_count": 0 if result.ranges is None else len(result.ranges),
               "seconds": {"ingest": round(t1 - t0, 3), "consensus": round(t2 - t1, 3)}}
    if as_json:
        click.echo(json.dumps(summary, ensure_ascii=False))
    else:
        click.echo(f"tags: {report.summary()}", err=True)
        for row_no, reason, excerpt in report.samples[:5]:
            click.echo(f"  row {row_no}: {reason}: {excerpt}", err=True)
        click.echo(f"{result.summary()} -> {labels} ({t2 - t0:.2f}s)")
    sys.stdout.flush()


def _consensus_fields(d, path: str) -> dict:
    """The consensus part of a config file (one format for `build --config` and `consensus --config`)."""
    from trainer.pipeline import BuildError, split_config
    try:
        own, sections = split_config(d)
    except BuildError as exc:
        raise click.ClickException(f"--config {path}: {exc}") from None
    skipped = sorted(own) + sorted(k for name, v in sections.items() if name != "consensus" for k in v)
    if skipped:
        click.echo(f"--config {path}: not consensus settings, skipped here: {', '.join(skipped)}", err=True)
    return sections["consensus"]
