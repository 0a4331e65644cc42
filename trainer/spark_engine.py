"""The Apache Spark engine of the batch jobs: consensus input reduction (PySpark DataFrame API).

One model, two engines. Spark does the work that grows with the number of *events*, distributed:
reading CSV / JSONL / Parquet (any Hadoop path: local, s3a://, hdfs://), parsing and normalising
every row with the numpy engine's own row rules (`trainer.ingest_columns.Builder`, run per Arrow
batch inside `mapInPandas`), the `as_of` cut, the per-reporter daily cap (window by reporter and UTC
day, ties by source row) and one vote per (reporter, number) (the latest; ties: the later row).
It also computes each reporter's first-seen time and the set of tagged numbers. What reaches the
driver is the *vote* table (one row per reporter x number, about 12 bytes a vote in numpy), and the
driver runs the very same `trainer.consensus.run` (weights, bloc and cohort defences, Dawid-Skene EM,
calibration, thresholds, ranges) on it. Every step Spark does is idempotent under the numpy
engine's own pre-steps, so `run` repeating them changes nothing; parity is tested
(tests/trainer/test_spark_engine.py). Where that driver step stops fitting one machine is
discussed in docs/scale-out.md.

`spark_session(master)` starts (or reuses) a session; `consensus(paths, cfg, ...)` returns the
`ConsensusResult` and the ingest's `BadRowReport`; `aggregate_calls` lives in
`trainer/spark_features.py`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from trainer import consensus as C
from trainer.ingest import MAX_SAMPLES, BadRowReport, IngestError
from trainer.ingest_columns import (CATEGORY_CODES, MS_THRESHOLD, TagEvents, ts_column,
                                    number_reason)

DAY = 86400
DEFAULT_MASTER = "local[*]"
TAG_FIELDS = ("number", "reporter", "category", "ts", "company")


class SparkEngineError(RuntimeError):
    """Spark cannot start (no pyspark / no Java) or an input cannot be read (message says why)."""


def spark_session(master: str | None = None, app_name: str = "callmark",
                  driver_memory: str | None = None):
    """A SparkSession on `master` (default `local[*]`; a `spark-submit` session is reused as is).
    Raises SparkEngineError with the fix when pyspark or Java is missing."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise SparkEngineError("the Spark engine needs pyspark: pip install 'callmark[spark]' "
                               "(and Java 17+)") from None
    import sys
    # local masters run Python workers on this interpreter (the one with callmark's deps); a
    # cluster sets PYSPARK_PYTHON itself (see docs/scale-out.md)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    active = SparkSession.getActiveSession()
    if active is not None and master is None:
        return active
    b = (SparkSession.builder.appName(app_name).master(master or DEFAULT_MASTER)
         .config("spark.sql.execution.arrow.pyspark.enabled", "true")
         .config("spark.sql.session.timeZone", "UTC")
         .config("spark.ui.enabled", "false")
         .config("spark.ui.showConsoleProgress", "false")
         .config("spark.sql.shuffle.partitions",
                 os.environ.get("CALLMARK_SPARK_SHUFFLE_PARTITIONS", "8")))
    if driver_memory:
        b = b.config("spark.driver.memory", driver_memory)
    import warnings
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")
    try:
        spark = b.getOrCreate()
        spark.sparkContext.setLogLevel("ERROR")
        return spark
    except Exception as e:   # JVM missing or failing: py4j raises plain exceptions
        raise SparkEngineError(f"cannot start Spark on {master or DEFAULT_MASTER}: {e}; the Spark "
                               "engine needs Java 17+ (apt-get install openjdk-17-jre-headless)") \
            from None


def input_kind(path: str) -> str:
    """csv | json | parquet from the path (a directory is a Parquet dataset)."""
    p = str(path).lower()
    if p.endswith((".parquet", ".pq")) or (Path(path).is_dir()):
        return "parquet"
    if p.endswith((".jsonl", ".jsonl.gz", ".json", ".json.gz", ".ndjson")):
        return "json"
    if p.endswith((".csv", ".csv.gz", ".tsv")):
        return "csv"
    raise IngestError(f"{path}: unknown tag events format; use .csv[.gz], .jsonl[.gz] or "
                      ".parquet (or a directory of Parquet files)")


def read_events(spark, paths: Sequence[str], fields: Sequence[str] = TAG_FIELDS):
    """The raw tag events as strings (`fields`, missing optional ones null) plus `_row`, the
    source order (monotonic: file order, then row order)."""
    from pyspark.sql import functions as F
    for p in paths:
        if "://" not in str(p) and not Path(p).exists():
            raise IngestError(f"{p}: no such file or directory")
    kinds = {input_kind(p) for p in paths}
    if len(kinds) != 1:
        raise IngestError(f"mixed input formats {sorted(kinds)}; pass files of one format")
    kind = kinds.pop()
    reader = spark.read
    if kind == "csv":
        df = reader.option("header", True).option("inferSchema", False).csv(list(map(str, paths)))
    elif kind == "json":
        df = reader.option("mode", "PERMISSIVE").json(list(map(str, paths)))
    else:
        df = reader.parquet(*map(str, paths))
    cols = {c.lower(): c for c in df.columns}
    missing = [f for f in ("number", "reporter", "category", "ts") if f not in cols]
    if missing:
        raise IngestError(f"tag events lack columns {missing}; have {sorted(df.columns)}")
    out = [F.col(f"`{cols[f]}`").cast("string").alias(f) if f in cols
           else F.lit(None).cast("string").alias(f) for f in fields]
    return df.select(*out).withColumn("_row", F.monotonically_increasing_id())


def _normalise_numbers(region: str):
    """mapInPandas function: distinct raw numbers -> key (-1 none) and the bad-row reason."""
    def run(batches: Iterator[Any]) -> Iterator[Any]:
        import pandas as pd

        from callmark.numbers import key_of
        for pdf in batches:
            raw = pdf["number"].tolist()
            keys = [key_of(s, region) for s in raw]   # Builder._key for a present value
            yield pd.DataFrame({
                "number": raw, "key": np.array([-1 if k is None else k for k in keys], np.int64),
                "nbad": [None if k is not None else number_reason(s, region)
                         for s, k in zip(raw, keys)]})
    return run


def _excerpt(values) -> list:
    return [str(v)[:120] for v in values]


def _row_rules(batches: Iterator[Any]) -> Iterator[Any]:
    """mapInPandas function: joined rows (raw fields + number key) -> parsed rows, with the
    Builder's rules in its order: number, category, reporter, timestamp (first reason wins)."""
    import pandas as pd
    for pdf in batches:
        n = len(pdf)
        key = pdf["key"].to_numpy(np.int64)
        cat = pdf["category"].map(CATEGORY_CODES).fillna(0).to_numpy(np.int32)
        rep = pdf["reporter"]
        no_rep = (rep.isna() | (rep == "")).to_numpy()
        ts_raw = pdf["ts"].where(pdf["ts"].notna(), None).tolist()
        ts = ts_column(ts_raw)
        bad = np.full(n, None, object)
        excerpt = np.full(n, None, object)
        taken = np.zeros(n, bool)
        for mask, reason, col in ((key == -2, "missing number", "number"),
                                  (key == -1, None, "number"),
                                  (cat == 0, "unknown category", "category"),
                                  (no_rep, "missing reporter", None),
                                  (ts < 0, "bad timestamp", "ts")):
            idx = np.flatnonzero(mask & ~taken)
            if not idx.size:
                continue
            taken[idx] = True
            bad[idx] = pdf["nbad"].to_numpy(object)[idx] if reason is None else reason
            excerpt[idx] = _excerpt(pdf[col].to_numpy(object)[idx]) if col else ""
        comp = pdf["company"]
        if comp.notna().any():  # the Builder's rule: stripped, at most 100 characters
            comp = comp.map(lambda c: (str(c).strip()[:100] or None) if isinstance(c, str) and c
                            else None)
        yield pd.DataFrame({"_row": pdf["_row"].to_numpy(np.int64), "key": key,
                            "reporter": rep, "category": cat, "ts": ts, "company": comp,
                            "bad": bad, "excerpt": excerpt})


PARSED_SCHEMA = ("_row long, key long, reporter string, category int, ts long, company string, "
                 "bad string, excerpt string")
NUMBERS_SCHEMA = "number string, key long, nbad string"


def parse_events(raw, region: str = "CN"):
    """Raw rows -> parsed rows (`key, reporter, category, ts, company`) and rejected rows (`bad`
    reason not null), by the numpy engine's ingest rules.

    Each distinct raw number is normalised once (libphonenumber, ~0.1-0.3 ms a call, is the
    dominant per-row cost of an ingest) and joined back. Plain rows (a number with a key, a known
    category, a reporter, an integer epoch, no company) are finished with native Spark
    expressions; every other row goes through the Builder's rules on Arrow batches in pandas
    (`_row_rules`), which also words the rejection reasons."""
    from pyspark.sql import functions as F
    present = F.col("number").isNotNull() & (F.col("number") != "")
    nums = (raw.select("number").filter(present).distinct()
            .mapInPandas(_normalise_numbers(region), NUMBERS_SCHEMA))
    joined = (raw.join(nums, "number", "left")
              .withColumn("key", F.coalesce(F.col("key"), F.lit(-2).cast("long"))))
    codes = F.create_map(*[F.lit(x) for k, v in CATEGORY_CODES.items() for x in (k, v)])
    code = codes[F.col("category")]
    plain = F.coalesce((F.col("key") >= 0) & code.isNotNull() & F.col("company").isNull()
                       & (F.col("reporter") != "") & F.col("ts").rlike("^[0-9]{1,18}$"),
                       F.lit(False))
    epoch = F.col("ts").cast("long")
    native = joined.filter(plain).select(
        "_row", "key", "reporter", code.cast("int").alias("category"),
        F.when(epoch > MS_THRESHOLD, F.expr("cast(ts as long) div 1000")).otherwise(epoch)
        .alias("ts"),
        F.lit(None).cast("string").alias("company"), F.lit(None).cast("string").alias("bad"),
        F.lit(None).cast("string").alias("excerpt"))
    other = (joined.filter(~plain)
             .select("_row", "number", "key", "nbad", "reporter", "category", "ts", "company")
             .mapInPandas(_row_rules, PARSED_SCHEMA))
    return native.unionByName(other)


@dataclass
class Reduced:
    """The vote table and side facts a driver needs to run the consensus model."""

    events: TagEvents            # one row per (reporter, number): the latest counted event
    first_seen: np.ndarray       # int64 per reporter index: first event time (<= as_of)
    tagged_keys: np.ndarray      # int64 sorted: every number with an event (<= as_of)
    as_of: int
    report: BadRowReport
    counts: dict[str, int]


INT64_MAX = np.iinfo(np.int64).max


def _first_appearance_index(df, col: str, out: str):
    """(distinct non-null values of `col` numbered 0.. by their first source row, as `out`;
    cached). The numpy ingest interns reporters and companies in that order."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F
    firsts = df.filter(F.col(col).isNotNull()).groupBy(col).agg(F.min("_row").alias("r0"))
    # one ordered window over the distinct values only (reporters: ~1 per 20 events)
    return firsts.withColumn(out, F.row_number().over(Window.orderBy("r0")) - 1).persist()


def reduce_coded(ev, cfg: C.ConsensusConfig, n_reps: int) -> tuple[dict, np.ndarray, np.ndarray]:
    """Daily cap and latest vote on Spark over integer-coded events (`_row, key, rep, category,
    ts, comp`, all at or before as_of). Returns the votes as numpy columns in source-row order,
    the first-seen time per reporter index (INT64_MAX when none) and the sorted tagged keys."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F
    # hash-partitioned by reporter once: the daily cap (rep, day), the latest vote (rep, key) and
    # the first-seen times (rep) then need no further shuffle
    ev = ev.repartition(int(ev.sparkSession.conf.get("spark.sql.shuffle.partitions")), "rep")
    ev = ev.persist()
    first = ev.groupBy("rep").agg(F.min("ts").alias("t")).toPandas()
    first_seen = np.full(n_reps, INT64_MAX, np.int64)
    first_seen[first["rep"].to_numpy(np.int64)] = first["t"].to_numpy(np.int64)
    tagged = np.unique(ev.select("key").distinct().toPandas()["key"].to_numpy(np.int64))
    if cfg.defences and cfg.daily_cap > 0:
        w = Window.partitionBy("rep", F.floor(F.col("ts") / DAY)).orderBy("ts", "_row")
        ev_c = ev.withColumn("_n", F.row_number().over(w)).filter(F.col("_n") <= cfg.daily_cap)
    else:
        ev_c = ev
    w = Window.partitionBy("rep", "key").orderBy(F.col("ts").desc(), F.col("_row").desc())
    pdf = (ev_c.withColumn("_v", F.row_number().over(w)).filter(F.col("_v") == 1)
           .select("_row", "key", "rep", "category", "ts", "comp").toPandas())
    ev.unpersist()
    order = np.argsort(pdf["_row"].to_numpy(np.int64), kind="stable")
    cols = {c: pdf[c].to_numpy()[order] for c in ("key", "rep", "category", "ts", "comp")}
    return cols, first_seen, tagged


def _events(cols: dict, reporters: list, companies: list) -> TagEvents:
    return TagEvents.from_arrays(cols["key"], cols["rep"], cols["category"], cols["ts"],
                                 reporters=reporters, company=cols["comp"], companies=companies)


def reduce_events(parsed, cfg: C.ConsensusConfig, as_of: int | None = None,
                  row_offset: int = 1) -> Reduced:
    """Distributed pre-model steps: as_of cut, daily cap, latest vote; plus first-seen times and
    the tagged numbers. Collects only votes (as integer columns through Arrow) and per-reporter /
    per-number facts to the driver."""
    from pyspark.sql import functions as F

    parsed = parsed.persist()
    late = F.lit(0) if as_of is None else F.when(F.col("ts") > int(as_of), 1).otherwise(0)
    report = BadRowReport()
    n_good, max_ts, n_late = 0, None, 0
    for r in parsed.groupBy("bad").agg(F.count(F.lit(1)).alias("n"), F.max("ts").alias("max_ts"),
                                       F.sum(late).alias("late")).collect():
        report.rows += int(r["n"])
        if r["bad"] is None:
            n_good, max_ts, n_late = int(r["n"]), r["max_ts"], int(r["late"] or 0)
        else:
            report.counts[r["bad"]] = int(r["n"])
    if report.counts:
        for r in (parsed.filter(F.col("bad").isNotNull()).orderBy("_row").limit(MAX_SAMPLES)
                  .collect()):
            report.samples.append((int(r["_row"]) + row_offset, r["bad"], r["excerpt"] or ""))
    if not n_good:
        parsed.unpersist()
        raise IngestError(f"no usable tag event: {report.summary()}")
    as_of = int(max_ts) if as_of is None else int(as_of)
    ev = (parsed.filter(F.col("bad").isNull() & (F.col("ts") <= as_of))
          .select("_row", "key", "reporter", "category", "ts", "company"))
    reps = _first_appearance_index(ev, "reporter", "rep")
    comps = _first_appearance_index(ev, "company", "comp")
    coded = (ev.join(reps.select("reporter", "rep"), "reporter")
             .join(F.broadcast(comps.select("company", "comp")), "company", "left")
             .select("_row", "key", "rep", "category", "ts",
                     F.coalesce(F.col("comp"), F.lit(-1)).alias("comp")))
    names = reps.select("rep", "reporter").toPandas().sort_values("rep")["reporter"].tolist()
    comp_names = comps.select("comp", "company").toPandas().sort_values("comp")["company"].tolist()
    cols, first_seen, tagged = reduce_coded(coded, cfg, len(names))
    for d in (reps, comps, parsed):
        d.unpersist()
    counts = {"events": n_good, "after_as_of": n_late, "votes_collected": int(cols["key"].size)}
    return Reduced(_events(cols, names, comp_names), first_seen, tagged, as_of, report, counts)


def reduce_tag_events(spark, events: TagEvents, cfg: C.ConsensusConfig, as_of=None
                      ) -> Reduced:
    """The same reduction for events already parsed on the driver (a build's source profile:
    `trainer.sources` reads the store and files and dedupes event ids across inputs). The columns
    go to Spark through Arrow; reporter and company indices keep the build's interning."""
    import pandas as pd
    if not len(events):
        raise IngestError("no usable tag event")
    as_of = int(events.ts.max()) if as_of is None else C.parse_as_of(as_of)
    m = events.ts <= as_of
    idx = np.flatnonzero(m)
    pdf = pd.DataFrame({"_row": idx.astype(np.int64), "key": events.key[m],
                        "rep": events.reporter[m].astype(np.int32),
                        "category": events.category[m].astype(np.int32), "ts": events.ts[m],
                        "comp": np.asarray(events.company)[m].astype(np.int32)})
    ev = spark.createDataFrame(pdf)
    del pdf
    cols, first_seen, tagged = reduce_coded(ev, cfg, len(events.reporters))
    counts = {"events": len(events), "after_as_of": int(m.size - idx.size),
              "votes_collected": int(cols["key"].size)}
    return Reduced(_events(cols, list(events.reporters), list(events.companies)), first_seen,
                   tagged, as_of, BadRowReport(), counts)


def run_reduced(red: Reduced, cfg: C.ConsensusConfig, **side) -> C.ConsensusResult:
    """`trainer.consensus.run` on a Spark-reduced vote table (the driver step)."""
    result = C.run(red.events, cfg, as_of=red.as_of, first_seen=red.first_seen,
                   tagged_keys=red.tagged_keys, **side)
    result.stats.update(red.counts)
    result.stats["engine"] = "spark"
    return result


def consensus(paths: Sequence[str] | str, cfg: C.ConsensusConfig | None = None, as_of=None,
              region: str = "CN", master: str | None = None, spark=None,
              **side) -> tuple[C.ConsensusResult, BadRowReport]:
    """Consensus on the Spark engine: same model, same LABELS as `trainer.consensus.run` on the
    same events. `paths`: tag event files (CSV/JSONL/Parquet, one format); `side`: verified,
    appeals, recycled (as the numpy engine takes them)."""
    cfg = cfg or C.ConsensusConfig()
    spark = spark or spark_session(master)
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    raw = read_events(spark, paths)
    kind = input_kind(paths[0])
    red = reduce_events(parse_events(raw, region), cfg,
                        None if as_of is None else C.parse_as_of(as_of),
                        row_offset=2 if kind == "csv" else 1)
    return run_reduced(red, cfg, **side), red.report


def run_sources(spark, inputs, overrides: dict | None = None, as_of=None) -> C.ConsensusResult:
    """`trainer.consensus_sources.run_sources` with each crowd profile's vote reduction (as_of
    cut, daily cap, latest vote, first-seen times, tagged numbers) on Spark, in one session; list
    profiles and the merge are the numpy engine's own. `inputs`: trainer.sources.BuildInputs."""
    from trainer import consensus_sources as CS
    side = inputs.side
    results: dict[str, C.ConsensusResult] = {}
    for name, events in inputs.groups.items():
        if len(events):
            cfg = CS.config_for(name, overrides)
            cut = None if as_of is None else C.parse_as_of(as_of)
            if cut is not None and not (events.ts <= cut).any():
                results[name] = C.run(events, cfg, as_of=cut, **side)  # nothing left to reduce
                continue
            results[name] = run_reduced(reduce_tag_events(spark, events, cfg, cut), cfg, **side)
    for name, rows in inputs.lists.items():
        results[name] = CS.list_result(rows, name, as_of, side["verified"], side["appeals"])
    if not results:
        raise ValueError("no events to run the consensus on")
    return CS.merge(results)
