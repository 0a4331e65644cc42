"""`callmark build`: one whole release from tags and call records (see trainer/pipeline.py)."""
from __future__ import annotations

import json

import click


@click.command("build")
@click.option("--tags", multiple=True,
              help="Tag events input, repeatable: a CSV/JSONL file (e.g. from `callmark import`) or "
                   "'store' (the server store). Default: the store.")
@click.option("--data-dir", default="var", show_default=True, help="The server store (CALLMARK_DATA_DIR).")
@click.option("--calls", default=None, help="Call records (CSV or Parquet; schema in docs/feature-contract.md) "
              "for the teacher and the student.")
@click.option("--calls-map", default=None, help="Map the schema onto your export's columns, "
              "e.g. caller=other_party,callee=subscriber_id,start=begin_time.")
@click.option("--verified", default=None, help="Extra verified businesses file (number,company).")
@click.option("--appeals", default=None, help="Extra appeals file (number,categories,filed_ts,accepted).")
@click.option("--recycled", default=None, help="Reissued numbers file (number,reissued_ts).")
@click.option("--as-of", default=None, help="Evidence cut-off, ISO-8601 or epoch seconds.")
@click.option("--out", default="var/builds", show_default=True, help="Parent of the build directories.")
@click.option("--version", type=int, default=None, help="Build version (default: newest + 1).")
@click.option("--region", default="CN", show_default=True,
              help="Region numbers without a + are read in (and the call records').")
@click.option("--regions", default=None,
              help="Pack regions, e.g. US,DE,CN (default: every region with published labels).")
@click.option("--published-model", default=None, help="Published model dir, for the release gate.")
@click.option("--no-student", is_flag=True, help="Skip training the on-device model.")
@click.option("--engine", type=click.Choice(["numpy", "spark"]), default="numpy", show_default=True,
              help="Engine of the consensus (each crowd profile's vote reduction) and call-feature "
                   "stages (spark: PySpark, Java 17+; one session per build).")
@click.option("--spark-master", default=None, help="Spark master for --engine spark (default local[*]).")
@click.option("--config", "config_file", default=None, type=click.Path(exists=True, dir_okay=False),
              help="JSON object of build fields and consensus / pack / model-label fields, flat (the same "
                   "file `callmark consensus --config` takes) or nested ({\"consensus\": {...}}); options "
                   "given on the command line win. Evaluate the model on a gold set of audited numbers with "
                   "{\"eval_truth\": \"gold.csv\", \"eval_gold\": true} (docs/models.md).")
def command(tags, data_dir, calls, calls_map, verified, appeals, recycled, as_of, out, version, region, regions,
            published_model, no_student, engine, spark_master, config_file):
    """Build a release: consensus → teacher → student → packs → deltas → evaluation.

    Each event's source profile (callmark/sources.py) picks its consensus policy; one release
    holds full/lite packs for every region. Builds go to var/builds/v<N> (N: one more than the newest
    there); `callmark publish --build` takes one.

    Stage lines and their times go to stderr (none under `callmark -q`); stdout is one JSON line.

    Example: callmark build --tags var/demo/sim/tags.jsonl --calls var/demo/sim/calls.csv --verified var/demo/sim/verified.csv

    An operator's export: --calls cdr.parquet --calls-map caller=other_party,callee=subscriber_id

    Example: callmark build --tags var/ftc.jsonl --tags var/phoneblock.jsonl --regions US,DE --no-student

    Consensus and call features on Spark: callmark build --engine spark --spark-master 'local[2]' --tags sim/tags.jsonl
    --calls sim/calls.csv --no-student
    """
    from trainer.pipeline import BuildConfig, BuildError, build

    ctx = click.get_current_context()
    given = {name: value for name, value in (
        ("tags", list(tags) or None), ("data_dir", data_dir), ("calls", calls), ("calls_map", calls_map),
        ("verified", verified), ("appeals", appeals), ("recycled", recycled), ("as_of", as_of), ("out", out),
        ("version", version), ("region", region), ("published_model", published_model),
        ("regions", [r for r in (regions or "").upper().split(",") if r.strip()] or None),
        ("student", not no_student), ("engine", engine), ("spark_master", spark_master))
        # an option left at its default does not override the config file
        if ctx.get_parameter_source("no_student" if name == "student" else name).name != "DEFAULT"}
    try:
        extra = {}
        if config_file:
            try:
                extra = json.loads(open(config_file, encoding="utf-8").read())
            except ValueError as exc:
                raise BuildError(f"--config {config_file}: not JSON ({exc})") from None
        defaults = {"data_dir": data_dir, "out": out, "region": region}  # the CLI's documented defaults
        cfg = BuildConfig.from_dict(dict(defaults, **extra) if isinstance(extra, dict) else extra, **given)
        from callmark.progress import quiet
        # stage lines go to stderr (stdout is the result, one JSON line); none under --quiet
        result = build(cfg, echo=(lambda *_: None) if quiet() else (lambda m: click.echo(m, err=True)))
    except (BuildError, ValueError, OSError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from None
    st = result.stats
    click.echo(json.dumps({"build_dir": result.build_dir, "version": result.version,
                           "events": st["ingest"]["good"], "bad_rows": st["ingest"]["bad"],
                           "duplicates": st["ingest"].get("duplicates", 0), "labels": st["labels"],
                           "published": st["published"], "sources": st.get("sources", {}),
                           "packs": st.get("packs", {}).get("regions", {})}, default=str))
