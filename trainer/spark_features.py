"""Call-feature aggregation on Apache Spark: `trainer.features.aggregate_calls` as DataFrame jobs.

Same input (calls CSV with `trainer.features.CALL_COLUMNS`; also Parquet or JSONL with those
columns), same FEATURE_NAMES, same definitions (see trainer/features.py), one row per remote number
in order of first appearance. Everything grows with the call records and runs distributed: the
per-number sums, the 24 hour-of-day counts, the per-(number, subscriber), per-(number, local day)
and per-(number, absolute hour) groupings; only the per-number result (one row of 24 features a
number) reaches the driver. Subscribers are compared by their full callee hash (the numpy engine
keeps 40 bits of it; equal unless two hashes collide in 40 bits).
"""
from __future__ import annotations

import numpy as np

from trainer.features import (CALL_COLUMNS, FEATURE_NAMES, LOCAL_OFFSET_S, SHORT_RING_S,
                              FeatureInputError, FeatureTable)
from trainer.spark_engine import input_kind

# value spellings accepted by trainer/call_records.py (docs/feature-contract.md, "Call records")
ANSWERED_TRUE = ("1", "true", "yes", "y", "t")
DIRECTION_IN = ("in", "incoming", "mt", "inbound", "terminating")
VERIFICATION_FAILED = ("failed", "fail")
VERIFICATION_NONE = ("none", "", "not_verified", "unverified")


def _read_calls(spark, path: str):
    from pathlib import Path

    from pyspark.sql import functions as F
    if "://" not in str(path) and not Path(path).exists():
        raise FeatureInputError(f"calls file {path} not found; generate one with "
                                "`callmark simulate --out DIR`")
    kind = input_kind(path)
    r = spark.read
    df = (r.option("header", True).option("inferSchema", False).csv(str(path)) if kind == "csv"
          else r.json(str(path)) if kind == "json" else r.parquet(str(path)))
    missing = [c for c in CALL_COLUMNS if c not in df.columns]
    if missing:
        raise FeatureInputError(f"{path} lacks columns {missing}; expected "
                                f"{','.join(CALL_COLUMNS)}")
    # Spark's CSV reader gives empty fields as null; the numpy engine sees "" (coalesce back)
    return df.select(*[F.coalesce(F.col(c).cast("string"), F.lit("")).alias(c)
                       for c in CALL_COLUMNS]) \
             .withColumn("_row", F.monotonically_increasing_id())


def aggregate_calls(spark, calls_path: str) -> FeatureTable:
    """Per-number call-behaviour features on Spark (see trainer.features.aggregate_calls)."""
    from pyspark.sql import functions as F

    raw = _read_calls(spark, calls_path)
    num = lambda c: F.when(F.coalesce(F.col(c), F.lit("")) == "", F.lit(0.0)) \
        .otherwise(F.col(c).cast("double"))   # noqa: E731
    df = raw.select(
        "_row", "caller", F.col("callee_hash").alias("callee"),
        F.col("start").cast("timestamp").cast("double").alias("start"),
        num("ring_s").alias("ring_s"), num("talk_s").alias("talk_s"),
        F.lower(F.col("answered")).isin(*ANSWERED_TRUE).alias("answered_any"),
        F.lower(F.col("direction")).isin(*DIRECTION_IN).alias("inb"),
        F.col("presentation").alias("presentation"), F.col("verification").alias("verification"),
        F.col("start").alias("start_raw"),
        F.col("ring_s").alias("ring_raw"), F.col("talk_s").alias("talk_raw"))
    bad = df.filter(F.col("start").isNull() | F.col("ring_s").isNull()
                    | F.col("talk_s").isNull()).limit(1).collect()
    if bad:
        b = bad[0]
        raise FeatureInputError(f"{calls_path}: bad call record (start={b['start_raw']!r}, "
                                f"ring_s={b['ring_raw']!r}, talk_s={b['talk_raw']!r}); expected "
                                "ISO-8601 times like 2026-03-01T16:00:30Z and numeric seconds")
    local = F.col("start") + LOCAL_OFFSET_S
    hour = (F.floor(local / 3600) % 24).cast("int")
    df = df.withColumn("hour", hour).withColumn("day", F.floor(local / 86400)) \
           .withColumn("habs", F.floor(local / 3600)) \
           .withColumn("ans", F.col("answered_any") & F.col("inb")).cache()
    d = lambda cond: F.sum(F.when(cond, 1.0).otherwise(0.0))   # noqa: E731
    inb, ans = F.col("inb"), F.col("ans")
    odd = ((~F.col("presentation").startswith("+")) & (~F.col("presentation").rlike(r"^\p{Nd}"))) \
        | F.col("presentation").contains("-")
    per = df.groupBy("caller").agg(
        F.min("_row").alias("_row"), F.count(F.lit(1)).cast("double").alias("calls"),
        d(inb).alias("rang"), d(ans).alias("answered_in"),
        F.sum(F.when(inb, F.col("ring_s")).otherwise(0.0)).alias("ring_s_in"),
        F.sum(F.when(ans, F.col("talk_s")).otherwise(0.0)).alias("talk_s_in"),
        d(inb & ~F.col("answered_any") & (F.col("ring_s") < SHORT_RING_S)).alias("short_ring_in"),
        d(ans & (F.col("talk_s") >= 60)).alias("long_talk_in"),
        d(inb & ((F.col("hour") < 7) | (F.col("hour") >= 22))).alias("night_in"),
        d(inb & (F.col("hour") >= 9) & (F.col("hour") < 18)).alias("business_in"),
        d(F.lower(F.col("verification")).isin(*VERIFICATION_FAILED)).alias("verif_failed"),
        d(F.lower(F.col("verification")).isin(*VERIFICATION_NONE)).alias("verif_none"),
        d(odd).alias("present_odd"),
        F.min("start").alias("ts_min"), F.max("start").alias("ts_max"))
    hours = (df.filter(inb).groupBy("caller").pivot("hour", list(range(24))).count()
             .na.fill(0))
    pairs = (df.groupBy("caller", "callee").agg(d(inb).alias("r"), d(~inb).alias("dl"))
             .groupBy("caller").agg(d(F.col("r") > 0).alias("distinct"),
                                    d(F.col("r") >= 2).alias("repeat"),
                                    d((F.col("r") > 0) & (F.col("dl") > 0)).alias("callback"),
                                    d(F.col("dl") > 0).alias("dialled_by")))
    days = (df.filter(inb).groupBy("caller", "day").count().groupBy("caller")
            .agg(F.count(F.lit(1)).cast("double").alias("active_days"),
                 F.max("count").cast("double").alias("max_day")))
    hrs = (df.filter(inb).groupBy("caller", "habs").count().groupBy("caller")
           .agg(F.max("count").cast("double").alias("max_hour")))
    table = (per.join(hours, "caller", "left").join(pairs, "caller", "left")
             .join(days, "caller", "left").join(hrs, "caller", "left").orderBy("_row")
             .toPandas())
    df.unpersist()
    if not len(table):
        raise FeatureInputError(f"{calls_path} holds no call records")
    return _features(table)


def _features(t) -> FeatureTable:
    """The numpy engine's feature formulas over the per-number aggregates."""
    col = lambda c: t[c].fillna(0).to_numpy(np.float64)   # noqa: E731
    H = np.column_stack([col(str(h)) if str(h) in t.columns else np.zeros(len(t))
                         for h in range(24)])
    calls, rang, ans = col("calls"), col("rang"), col("answered_in")
    distinct, active = col("distinct"), col("active_days")
    with np.errstate(divide="ignore", invalid="ignore"):
        p = H / np.maximum(H.sum(1, keepdims=True), 1)
        entropy = -(np.where(p > 0, p * np.log2(np.where(p > 0, p, 1)), 0)).sum(1)
        share = lambda a, b: np.where(b > 0, a / b, np.nan)   # noqa: E731
        feats = {
            "calls": calls, "rang_share": rang / calls, "answer_rate": share(ans, rang),
            "ring_s_mean": share(col("ring_s_in"), rang), "talk_s_mean": share(col("talk_s_in"), ans),
            "short_ring_share": share(col("short_ring_in"), rang),
            "long_talk_share": share(col("long_talk_in"), ans),
            "night_share": share(col("night_in"), rang),
            "business_share": share(col("business_in"), rang),
            "hour_nunique": (H > 0).sum(1).astype(float), "hour_entropy": entropy,
            "distinct_callees": distinct, "calls_per_callee": share(rang, distinct),
            "repeat_callee_share": share(col("repeat"), distinct),
            "callback_share": share(col("callback"), distinct), "dialled_by": col("dialled_by"),
            "active_days": active, "span_days": (col("ts_max") - col("ts_min")) / 86400.0,
            "calls_per_day": share(rang, active), "max_calls_day": col("max_day"),
            "max_calls_hour": col("max_hour"),
            "verif_failed_share": col("verif_failed") / calls,
            "verif_none_share": col("verif_none") / calls,
            "present_odd_share": col("present_odd") / calls,
        }
    X = np.column_stack([feats[k] for k in FEATURE_NAMES]).astype(np.float64)
    return FeatureTable(ids=t["caller"].tolist(), names=list(FEATURE_NAMES), X=X,
                        meta={"rows": int(calls.sum()), "numbers": len(t), "engine": "spark"})
