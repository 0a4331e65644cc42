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
from trainer.ingest_columns import Builder, TagEvents

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


class _AllRows:
    """RowReport that keeps every rejected row (the per-batch report of the Spark ingest)."""

    def __init__(self):
        self.bad: dict[int, tuple[str, str]] = {}

    def add(self, row_no: int, reason: str, excerpt: Any = "") -> None:
        self.bad.setdefault(int(row_no), (reason, str(excerpt)[:120]))


def _parse_batches(region: str):
    """mapInPandas function: raw string rows -> parsed rows (numpy engine's Builder rules)."""
    def parse(batches: Iterator[Any]) -> Iterator[Any]:
        import pandas as pd
        for pdf in batches:
            rows = pdf["_row"].to_numpy(np.int64)
            rep = _AllRows()
            b = Builder(region, rep)
            cols = {f: pdf[f].where(pdf[f].notna(), None).tolist() for f in TAG_FIELDS}
            if not any(cols["company"]):
                del cols["company"]
            b.add(rows.tolist(), cols)
            ev = b.finish()
            ok = ~np.isin(rows, np.fromiter(rep.bad, np.int64, len(rep.bad)))
            names = np.array(ev.reporters, dtype=object)
            comps = np.array(ev.companies + [None], dtype=object)
            good = pd.DataFrame({
                "_row": rows[ok], "key": ev.key, "reporter": names[ev.reporter] if len(ev) else [],
                "category": ev.category.astype(np.int32), "ts": ev.ts,
                "company": comps[ev.company] if len(ev) else [], "bad": None, "excerpt": None})
            bad_rows = sorted(rep.bad.items())
            badf = pd.DataFrame({
                "_row": np.array([r for r, _ in bad_rows], np.int64),
                "key": np.zeros(len(bad_rows), np.int64), "reporter": None,
                "category": np.zeros(len(bad_rows), np.int32),
                "ts": np.zeros(len(bad_rows), np.int64), "company": None,
                "bad": [v[0] for _, v in bad_rows], "excerpt": [v[1] for _, v in bad_rows]})
            yield pd.concat([good, badf], ignore_index=True) if len(badf) else good
    return parse


PARSED_SCHEMA = ("_row long, key long, reporter string, category int, ts long, company string, "
                 "bad string, excerpt string")


def parse_events(raw, region: str = "CN"):
    """Raw rows -> parsed rows (`key, reporter, category, ts, company`) and rejected rows (`bad`
    reason not null), by the numpy engine's ingest rules."""
    return raw.mapInPandas(_parse_batches(region), PARSED_SCHEMA)


@dataclass
class Reduced:
    """The vote table and side facts a driver needs to run the consensus model."""

    events: TagEvents            # one row per (reporter, number): the latest counted event
    first_seen: np.ndarray       # int64 per reporter index: first event time (<= as_of)
    tagged_keys: np.ndarray      # int64 sorted: every number with an event (<= as_of)
    as_of: int
    report: BadRowReport
    counts: dict[str, int]


def reduce_events(parsed, cfg: C.ConsensusConfig, as_of: int | None = None,
                  row_offset: int = 1) -> Reduced:
    """Distributed pre-model steps: as_of cut, daily cap, latest vote; plus first-seen times and
    the tagged numbers. Collects only votes and per-reporter / per-number facts to the driver."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    parsed = parsed.cache()
    good = parsed.filter(F.col("bad").isNull()).drop("bad", "excerpt")
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
    ev = good.filter(F.col("ts") <= as_of)
    counts = {"events": n_good, "after_as_of": n_late}
    # reporters in order of first appearance (the numpy ingest interns them so)
    reps = (ev.groupBy("reporter").agg(F.min("_row").alias("r0"), F.min("ts").alias("first_ts"))
            .orderBy("r0").toPandas())
    tagged = ev.select("key").distinct().orderBy("key").toPandas()["key"].to_numpy(np.int64)
    comps = (ev.filter(F.col("company").isNotNull()).groupBy("company")
             .agg(F.min("_row").alias("r0")).orderBy("r0").toPandas())
    if cfg.defences and cfg.daily_cap > 0:
        w = Window.partitionBy("reporter", F.floor(F.col("ts") / DAY)).orderBy("ts", "_row")
        ev = ev.withColumn("_n", F.row_number().over(w)).filter(F.col("_n") <= cfg.daily_cap)
    w = Window.partitionBy("reporter", "key").orderBy(F.col("ts").desc(), F.col("_row").desc())
    votes = (ev.withColumn("_v", F.row_number().over(w)).filter(F.col("_v") == 1)
             .select("key", "reporter", "category", "ts", "company", "_row").orderBy("_row"))
    pdf = votes.toPandas()
    parsed.unpersist()
    rep_index = {r: i for i, r in enumerate(reps["reporter"].tolist())}
    comp_names = comps["company"].tolist()
    comp_index = {c: i for i, c in enumerate(comp_names)}
    n = len(pdf)
    company = np.fromiter((comp_index.get(c, -1) if c is not None else -1
                           for c in pdf["company"].tolist()), np.int32, n)
    events = TagEvents.from_arrays(
        pdf["key"].to_numpy(np.int64), pdf["reporter"].map(rep_index).to_numpy(np.int32),
        pdf["category"].to_numpy(np.int16), pdf["ts"].to_numpy(np.int64),
        reporters=reps["reporter"].tolist(), company=company, companies=comp_names)
    counts["votes_collected"] = n
    return Reduced(events, reps["first_ts"].to_numpy(np.int64), tagged, as_of, report, counts)


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
    result = C.run(red.events, cfg, as_of=red.as_of, first_seen=red.first_seen,
                   tagged_keys=red.tagged_keys, **side)
    result.stats.update({k: v for k, v in red.counts.items()})
    result.stats["engine"] = "spark"
    return result, red.report
