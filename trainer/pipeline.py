"""`callmark build`: one release from tags and call records, as a recipe.

    ingest → consensus → call features → teacher → model-derived labels → student → evaluation
           → packs → deltas → build.json

Each stage is a function below; `build()` calls them in order. A build directory holds everything a
release needs (`labels.csv`, `packs/`, `deltas/from-vN/`, `model/`, `report/`) and `build.json`
describing it; `callmark publish --build DIR` signs and publishes it.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import click

from callmark import safejson
from callmark import sources as sources_lib
from trainer import consensus as consensus_lib
from trainer import consensus_sources, ingest, pack_regions, packs as packs_lib, sources
from trainer.evaluate import GATE_MARGIN, MIN_GAIN
from trainer.model.student import StudentConfig  # no TensorFlow at import time
from trainer.model_labels import ModelLabelConfig, merge_model_labels
from trainer.training_targets import WEAK_LABEL_MIN_CONFIDENCE, consensus_targets, training_dir

BUILD_JSON = "build.json"


class BuildError(RuntimeError):
    """A build that cannot go on; the message says which input to fix."""


@dataclass
class BuildConfig:
    """Inputs and knobs of one build. Paths may be relative to the working directory."""

    out: str = "var/builds"  # parent of the build directories (one per version)
    version: int | None = None  # None: one more than the newest build under `out`
    tags: str | list | None = None  # tag event inputs: files (CSV/JSONL) and/or "store"; None:
    # the server store at data_dir. Each event's `source` profile picks its consensus policy.
    data_dir: str = "var"  # the server store (tags, accepted appeals, verified businesses)
    calls: str | None = None  # call records (CSV/Parquet, trainer.call_records schema) for teacher + student
    calls_map: dict | str | None = None  # schema name -> the file's column ("caller=a,start=b" or a dict)
    verified: str | None = None  # extra verified businesses file (number,company)
    appeals: str | None = None  # extra appeals file
    recycled: str | None = None  # reissued numbers file (number,reissued_ts)
    as_of: str | None = None  # ISO time or epoch seconds; default: the newest tag
    region: str = "CN"  # region raw numbers (no +) are read in; the calls' region
    regions: list | None = None  # pack regions (ISO); None: every region with published labels
    deltas_back: int = 5  # versions back to build deltas from
    student: bool = True  # train the on-device student (needs calls)
    published_model: str | None = None  # model dir of the published release, for the gate
    gate_margin: float = GATE_MARGIN  # AUC the candidate may lose against the published model
    seed: int = 0
    consensus: dict = field(default_factory=dict)  # ConsensusConfig overrides
    packs: dict = field(default_factory=dict)  # PackConfig overrides
    model_labels: dict = field(default_factory=dict)  # ModelLabelConfig overrides
    student_config: dict = field(default_factory=dict)  # StudentConfig overrides
    eval_truth: str | None = None  # ground truth for the evaluation (simulations); default: release labels
    # eval_truth is a gold set (audited harmful and honest numbers): only the callers it lists are
    # evaluated, instead of counting every caller it does not list as honest (docs/models.md)
    eval_gold: bool = False
    min_gain: float = MIN_GAIN  # recall over "pack alone" (same FPR budget) a model must add to ship
    # an unpublished harmful crowd label below this confidence is no training target (neither
    # positive nor negative for the teacher, no class target for the student): its caller's targets
    # come from the teacher's score, as for an untagged caller (see consensus_targets)
    weak_label_min_confidence: float = WEAK_LABEL_MIN_CONFIDENCE
    engine: str = "numpy"  # numpy | spark: engine of the consensus and call-feature stages
    spark_master: str | None = None  # Spark master for engine=spark (default local[*])

    def __post_init__(self):
        if not isinstance(self.eval_gold, bool):
            raise BuildError(f"eval_gold must be true or false, not {self.eval_gold!r}")
        if self.eval_gold and not self.eval_truth:
            raise BuildError("eval_gold needs eval_truth: the gold set's truth file (number,category,harmful)")

    @classmethod
    def from_dict(cls, d: dict, **given) -> "BuildConfig":
        """A BuildConfig from a JSON object (`callmark build --config FILE`), then `given` on top.

        One format for every config file: build fields, plus the fields of ConsensusConfig,
        PackConfig and ModelLabelConfig either flat (`{"min_reporters": 4}`, as `callmark
        consensus --config` takes them) or nested in their section (`{"consensus": {...}}`).
        Raises BuildError naming the first unknown key or bad value."""
        own, sections = split_config(d)
        cfg = cls(**dict(own, **{k: v for k, v in sections.items() if v}, **given))
        check_sections(sections)
        return cfg


CONFIG_SECTIONS = {"consensus": consensus_lib.ConsensusConfig, "packs": packs_lib.PackConfig,
                   "model_labels": ModelLabelConfig, "student_config": StudentConfig}


def split_config(d) -> tuple[dict, dict[str, dict]]:
    """Split a config object into BuildConfig fields and per-section overrides (see
    BuildConfig.from_dict). A key both a build field and a section field (e.g. `region`) is the
    build's, which passes it on."""
    if not isinstance(d, dict):
        raise BuildError("a config file must hold one JSON object of fields, e.g. {\"min_reporters\": 4}")
    own_fields = {f.name for f in fields(BuildConfig)} - set(CONFIG_SECTIONS)
    own, sections = {}, {name: {} for name in CONFIG_SECTIONS}
    for key, value in d.items():
        if key in CONFIG_SECTIONS:
            if not isinstance(value, dict):
                raise BuildError(f"config key {key!r} must be an object of {CONFIG_SECTIONS[key].__name__} fields")
            sections[key].update(value)
        elif key in own_fields:
            own[key] = value
        else:
            homes = [name for name, c in CONFIG_SECTIONS.items() if key in {f.name for f in fields(c)}]
            if not homes:
                raise BuildError(f"unknown config key {key!r}; known keys: build: {', '.join(sorted(own_fields))}; "
                                 + "; ".join(f"{name}: {', '.join(sorted(f.name for f in fields(c)))}"
                                             for name, c in CONFIG_SECTIONS.items()))
            if len(homes) > 1:
                raise BuildError(f"config key {key!r} belongs to {' and '.join(homes)}; put it inside one of "
                                 f"those objects, e.g. {{\"{homes[0]}\": {{\"{key}\": ...}}}}")
            sections[homes[0]][key] = value
    return own, sections


def check_sections(sections: dict[str, dict]) -> None:
    """Validate each section now (so a typo fails before ingest, naming the key)."""
    for name, values in sections.items():
        if not values:
            continue
        cls = CONFIG_SECTIONS[name]
        try:
            if hasattr(cls, "from_dict"):
                cls.from_dict(dict(values))
            else:
                cls(**values)
        except (TypeError, ValueError) as exc:
            raise BuildError(f"config {name}: {exc}") from None


@dataclass
class BuildResult:
    """What a build produced; `to_dict()` is build.json."""

    version: int
    build_dir: str
    labels_csv: str
    pack_dir: str
    delta_dirs: list[str]
    model_dir: str | None
    report: str | None
    stats: dict

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def load(cls, build_dir: str) -> "BuildResult":
        """Read and check a build directory's build.json."""
        path = Path(build_dir) / BUILD_JSON
        if not path.is_file():
            raise BuildError(f"{build_dir}: no {BUILD_JSON}; pass a directory written by `callmark build`")
        try:
            d = safejson.load_path(path, max_bytes=16 << 20)
        except (safejson.JSONInputError, OSError) as exc:
            raise BuildError(f"{path}: not a readable build file ({exc}); rebuild it") from None
        if not isinstance(d, dict):
            raise BuildError(f"{path}: expected a JSON object; rebuild it")
        missing = set(cls.__dataclass_fields__) - set(d)
        if missing:
            raise BuildError(f"{path}: missing fields {sorted(missing)}; rebuild it")
        d = dict(d, build_dir=str(build_dir))
        for k in PATH_FIELDS:
            d[k] = _from_build(d[k], build_dir) if d[k] else d[k]
        d["delta_dirs"] = [_from_build(x, build_dir) for x in d["delta_dirs"] or []]
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})

    def write(self, build_dir: str | Path) -> Path:
        """Write build.json with its paths relative to the build directory (so the directory can be
        moved, and `callmark publish --build DIR` works from any working directory)."""
        d = self.to_dict()
        for k in PATH_FIELDS:
            d[k] = _to_build(d[k], build_dir) if d[k] else d[k]
        d["delta_dirs"] = [_to_build(x, build_dir) for x in d["delta_dirs"]]
        d["build_dir"] = "."
        path = Path(build_dir) / BUILD_JSON
        path.write_text(json.dumps(d, indent=1, default=str))
        return path


PATH_FIELDS = ("labels_csv", "pack_dir", "model_dir", "report")


def _to_build(p: str, build_dir: str | Path) -> str:
    """`p` relative to the build directory when it lies inside it, else absolute."""
    full, base = Path(p).resolve(), Path(build_dir).resolve()
    return str(full.relative_to(base)) if full == base or base in full.parents else str(full)


def _from_build(p: str, build_dir: str | Path) -> str:
    """A build.json path as a usable path: relative ones are relative to the build directory (older
    build.json files held paths relative to the working directory: kept when only that exists)."""
    if os.path.isabs(p):
        return p
    inside = Path(build_dir) / p
    return p if not inside.exists() and Path(p).exists() else str(inside)


class Progress:
    """Prints one line per stage with its time, so long builds show where they are."""

    def __init__(self, stages: int, echo=click.echo):
        self.stages, self.done, self.echo, self.t0 = stages, 0, echo, time.perf_counter()

    def stage(self, name: str):
        progress = self

        class _Stage:
            def __enter__(self):
                progress.done += 1
                self.t = time.perf_counter()
                progress.echo(f"[{progress.done}/{progress.stages}] {name} …")
                return self

            def __exit__(self, *exc):
                if exc[0] is None:
                    progress.echo(f"      {name} done in {time.perf_counter() - self.t:.1f} s")
                return False

        return _Stage()


# ------------------------------------------------------------------------------------------ stages

def ingest_stage(cfg: BuildConfig) -> sources.BuildInputs:
    """Tag events (grouped by source profile) plus verified businesses, accepted appeals and
    reissued numbers, with one bad-row report over every input."""
    src = sources.Sources(tags=cfg.tags, data_dir=cfg.data_dir, verified=cfg.verified, appeals=cfg.appeals,
                          recycled=cfg.recycled, region=cfg.region)
    try:
        return sources.read_inputs(src)
    except sources.SourceError as e:
        raise BuildError(str(e)) from None


def consensus_stage(inputs: sources.BuildInputs, cfg: BuildConfig, build_dir: Path):
    """Consensus per source profile (trainer/consensus_sources.py) → labels.csv (+ ranges)."""
    if cfg.engine == "spark":  # each crowd profile's vote reduction on Spark, one session
        from trainer import spark_engine
        try:
            spark = spark_engine.spark_session(cfg.spark_master)
        except spark_engine.SparkEngineError as e:
            raise BuildError(str(e)) from None
        result = spark_engine.run_sources(spark, inputs, cfg.consensus, as_of=cfg.as_of)
    else:
        result = consensus_sources.run_sources(inputs, cfg.consensus, as_of=cfg.as_of)
    labels_csv = build_dir / "labels.csv"
    result.write_csv(str(labels_csv))
    return result, labels_csv


def calls_stage(cfg: BuildConfig, build_dir: Path) -> str | None:
    """The call records as the canonical calls.csv: the file itself when it already is one, else a
    conversion (Parquet, other column names via `calls_map`, other value spellings) in the build."""
    if not cfg.calls:
        return None
    from trainer import call_records
    mapping = cfg.calls_map if isinstance(cfg.calls_map, dict) else call_records.parse_mapping(cfg.calls_map)
    if call_records.is_canonical(cfg.calls, mapping):
        return cfg.calls
    out = build_dir / "calls.csv"
    n = call_records.write_canonical_csv(cfg.calls, out, mapping)["rows"]
    click.echo(f"      {n:,} call records from {cfg.calls} converted to {out}")
    return str(out)


def features_stage(cfg: BuildConfig):
    """Per-number call-behaviour features from the call records (None without calls)."""
    if not cfg.calls:
        return None
    if cfg.engine == "spark":
        from trainer import spark_engine, spark_features
        return spark_features.aggregate_calls(spark_engine.spark_session(cfg.spark_master),
                                              cfg.calls)
    from trainer import features
    return features.aggregate_calls(cfg.calls)


def teacher_stage(table, labels_csv: Path, build_dir: Path, cfg: BuildConfig):
    """Fit the teacher on consensus labels; score every number with call evidence.

    Targets (`consensus_targets`): every number the crowd tagged is 1 when its leading category is
    harmful and 0 when it is benign, published or not; numbers nobody tagged are 0 (most untagged
    callers are honest). Unsettled tags are noisy weak labels, but leaving them out kept only the
    few published numbers as positives (37 of 206 harmful callers in a 9-day simulation: teacher AUC
    against ground truth 0.87; with them 0.99). Weak labels below `cfg.weak_label_min_confidence`
    are neither (-1): half of them are on honest numbers; left out, the teacher keeps its AUC
    (0.998 vs 0.998 on the demo's day 1) and the phone warns half as many honest calls. Every fitted
    row gets an out-of-fold score, so a score never saw its own label; the rows left out are scored
    by the teacher fitted without them."""
    if table is None:
        return None, None
    import numpy as np

    from trainer.features import FeatureTable
    from trainer.model import teacher

    y = consensus_targets(table.ids, labels_csv, cfg.region, cfg.weak_label_min_confidence)
    fit_rows = np.flatnonzero(y >= 0)
    positives = int((y[fit_rows] == 1).sum())
    if positives < 10 or len(fit_rows) - positives < 10:
        click.echo(f"      too few settled labels for the teacher ({positives} harmful); skipped", err=True)
        return None, None
    sub = FeatureTable(ids=[table.ids[i] for i in fit_rows], names=table.names, X=table.X[fit_rows],
                       y=y[fit_rows])
    model = teacher.fit(sub)
    model_dir = build_dir / "teacher"
    model.save(model_dir)
    scores = model.score(table)
    scores[fit_rows] = teacher.oof_scores(sub, folds=3, seed=cfg.seed)
    return model_dir, dict(zip(table.ids, scores.tolist()))


def model_labels_stage(labels_csv: Path, table, scores, side: dict, cfg: BuildConfig) -> dict:
    """Add model-derived labels for numbers with strong call evidence but few tags."""
    if scores is None:
        return {"model_labels_added": 0, "model_labels_upgraded": 0}
    from callmark.numbers import key_of

    calls_col = table.column("calls")
    by_key, calls = {}, {}
    for i, number in enumerate(table.ids):
        key = key_of(number, cfg.region)
        if key is not None:
            by_key[key] = scores[number]
            calls[key] = int(calls_col[i])
    config = ModelLabelConfig(**cfg.model_labels)
    return merge_model_labels(str(labels_csv), by_key, calls, config, verified=side["verified"],
                              appeals=side["appeals"])


def student_stage(cfg: BuildConfig, labels_csv: Path, events, side: dict, scores: dict | None,
                  build_dir: Path, event_sources: list | None = None) -> str | None:
    """Train the int8 on-device student on the release's labels, distilled from the teacher's
    scores of every number with call evidence (labelled or not)."""
    if not (cfg.student and cfg.calls):
        return None
    from trainer.model import student  # the package quiets TensorFlow before importing it
    data = training_dir(cfg, labels_csv, events, side, build_dir, event_sources)
    # risk is distilled from the teacher alone: the release's labels are sparse (most harmful callers
    # are untagged and would be taught "honest"); see docs/models.md
    config = student.StudentConfig.from_dict(dict({"distill_weight": 1.0, "soft_classes": True,
                                                   "seed": cfg.seed}, **cfg.student_config))
    return str(student.train_student(str(data), str(build_dir / "model"), config, teacher_scores=scores))


def student_or_skip(*args, stats: dict, echo) -> str | None:
    """`student_stage(*args)`, or None with the reason in stats["student"] when the data cannot
    train one (e.g. too few settled labels in a small crowd): the release still ships its packs."""
    try:
        return student_stage(*args)
    except Exception as exc:
        from trainer.model.student import StudentError
        if not isinstance(exc, StudentError):
            raise
        stats["student"] = f"skipped: {exc}"
        echo(f"      no on-device model this build: {exc} (the packs still ship)")
        return None



HEADLINE = ("recall_not_in_pack", "gain_over_pack", "pack_alone", "pack_plus_model", "warn_risk", "risk_auc",
            "risk_auc_callers", "risk_ece", "events", "max_fpr", "warn_risk_held_out", "trained_on")


def gated_evaluation(model_dir: str | None, cfg: BuildConfig, build_dir: Path, stats: dict,
                     echo) -> tuple[str | None, str | None]:
    """The one evaluation (`trainer.evaluate.assess`) and the release gate: the candidate and the
    published model scored on the same held-out calls; the verdict and report go into the candidate's
    model directory only. A refused model is left out of the release (the packs still ship and
    phones keep the published model). Returns (model_dir or None, report path)."""
    if model_dir is None:
        return None, None
    from trainer import evaluate
    res = evaluate.assess(model_dir, str(build_dir / "training"), published_dir=cfg.published_model,
                          truth_csv=cfg.eval_truth, gold=cfg.eval_gold, margin=cfg.gate_margin, min_gain=cfg.min_gain,
                          release=build_dir.name)
    verdict = res["verdict"]
    if res["candidate"]:
        stats["model_evaluation"] = {k: res["candidate"].get(k) for k in HEADLINE}
        stats["model_evaluation"]["truth"] = res["candidate"]["data"]["truth"]
    if res["published"]:
        stats["model_evaluation_published"] = {k: res["published"].get(k) for k in HEADLINE}
    stats["model_gate"] = "accepted" if verdict["accepted"] else "refused: " + "; ".join(verdict["reasons"])
    report = str(Path(model_dir) / "report.md") if (Path(model_dir) / "report.md").exists() else None
    if verdict["accepted"]:
        return model_dir, report
    keeps = ("the release keeps the published one" if cfg.published_model else
             "the release ships without a model (nothing was published before; phones label from the pack)")
    echo(f"      the release gate refused the new model; {keeps}.\n"
         + "".join(f"      - {r}\n" for r in verdict["reasons"]).rstrip())
    return None, report


def packs_stage(labels_csv: Path, version: int, cfg: BuildConfig, build_dir: Path) -> tuple[str, dict]:
    """Full and lite packs (plus CN province packs) for every region, with their wire forms, in
    one pack directory; returns it and per-region figures."""
    tables, dropped = pack_regions.read_labels_by_region(str(labels_csv), region=cfg.region)
    tables = {r: t for r, t in tables.items() if r != "ZZ"}
    if cfg.regions:
        wanted = [r.strip().upper() for r in cfg.regions if r.strip()]
        empty = packs_lib.make_table({c: [] for c in packs_lib.LABEL_COLS})
        tables = {r: tables.get(r, empty) for r in wanted}
    else:
        tables = {r: t for r, t in tables.items() if t.entries}
    if not tables:
        raise BuildError("no published labels in any region: nothing to pack (see the consensus "
                         "figures above; pass --regions to build empty packs)")
    config = packs_lib.PackConfig.from_dict(dict({"region": cfg.region}, **cfg.packs))
    pack_dir = build_dir / "packs"
    idx = pack_regions.build_region_packs(tables, version, str(pack_dir), config)
    figures = {r: {p["tier"]: {"entries": p["entries"], "wire_bytes": p["wire_bytes"]}
                   for p in idx["packs"] if p["region"] == r and p["tier"] in ("full", "lite")}
               for r in tables}
    return str(pack_dir), {"regions": figures, "dropped": dropped}


def deltas_stage(pack_dir: str, version: int, cfg: BuildConfig) -> list[str]:
    """Deltas from each of the last `deltas_back` builds' packs to this one."""
    out = []
    for old in previous_builds(cfg.out, version)[: cfg.deltas_back]:
        old_packs = Path(old.build_dir) / "packs"
        delta_dir = Path(pack_dir).parent / "deltas" / f"from-v{old.version}"
        try:
            packs_lib.make_deltas(str(old_packs), pack_dir, str(delta_dir))
        except packs_lib.PackError as exc:
            click.echo(f"      no delta from v{old.version}: {exc}", err=True)
            continue
        out.append(str(delta_dir))
    return out


# ------------------------------------------------------------------------------------------ recipe

def build(cfg: BuildConfig, echo=click.echo) -> BuildResult:
    """Run every stage in order and write build.json; returns what was built.

    A build that fails leaves no directory behind, and an unfinished one (no build.json, e.g. a killed
    run) is cleared before its version is built again, so no stage ever reads an older attempt's files.
    """
    version = cfg.version if cfg.version is not None else next_version(cfg.out)
    build_dir = Path(cfg.out) / f"v{version}"
    if (build_dir / BUILD_JSON).exists():
        raise BuildError(f"{build_dir} already holds a build; pick another --version")
    if build_dir.exists():
        shutil.rmtree(build_dir)
    build_dir.mkdir(parents=True)
    try:
        return _run_stages(cfg, version, build_dir, echo)
    except BaseException:
        shutil.rmtree(build_dir, ignore_errors=True)
        raise


def _run_stages(cfg: BuildConfig, version: int, build_dir: Path, echo) -> BuildResult:
    progress = Progress(8, echo)
    stats: dict = {}
    with progress.stage("ingest tag events"):
        inputs = ingest_stage(cfg)
        events, side = inputs.events, inputs.side
        stats["ingest"] = dict(inputs.report, inputs=[{k: v for k, v in p.items() if k != "samples"}
                                                      for p in inputs.inputs])
        n_events = len(events) + sum(len(v) for v in inputs.lists.values())
        echo(f"      {n_events:,} events, {inputs.report['bad']:,} bad rows, "
             f"{inputs.report['duplicates']:,} duplicates")
        for p in inputs.inputs:
            echo("      " + ingest.BadRowReport.from_dict(p).format(p["input"]).replace("\n", "\n      "))
    with progress.stage("consensus"):
        result, labels_csv = consensus_stage(inputs, cfg, build_dir)
        stats["labels"] = len(result)
        stats["published"] = int(result.published.sum())
        stats["sources"] = result.stats.get("sources", {})
        echo(f"      {len(result):,} numbers, {stats['published']:,} published")
        for name, f in stats["sources"].items():
            echo(f"      {name} ({sources_lib.profile(name).policy}): {f['events']:,} events, "
                 f"{f['numbers']:,} numbers, {f['published']:,} published")
    with progress.stage("call features"):
        cfg = replace(cfg, calls=calls_stage(cfg, build_dir))
        table = features_stage(cfg)
    with progress.stage("teacher"):
        teacher_dir, scores = teacher_stage(table, labels_csv, build_dir, cfg)
        stats.update(model_labels_stage(labels_csv, table, scores, side, cfg))
    with progress.stage("student"):
        model_dir = student_or_skip(cfg, labels_csv, events, side, scores, build_dir,
                                    [(n, len(e)) for n, e in inputs.groups.items()], stats=stats, echo=echo)
    with progress.stage("evaluation"):
        model_dir, report = gated_evaluation(model_dir, cfg, build_dir, stats, echo)
    with progress.stage("packs"):
        pack_dir, stats["packs"] = packs_stage(labels_csv, version, cfg, build_dir)
        for r, tiers in stats["packs"]["regions"].items():
            echo(f"      {r}: " + ", ".join(f"{t} {v['entries']:,} entries {v['wire_bytes']:,} B"
                                           for t, v in tiers.items()))
    with progress.stage("deltas"):
        delta_dirs = deltas_stage(pack_dir, version, cfg)
    res = BuildResult(version=version, build_dir=str(build_dir), labels_csv=str(labels_csv),
                      pack_dir=pack_dir, delta_dirs=delta_dirs, model_dir=model_dir,
                      report=report, stats=stats)
    res.write(build_dir)
    echo(f"build v{version} ready in {build_dir} ({time.perf_counter() - progress.t0:.1f} s)")
    return res


def previous_builds(out: str, before_version: int) -> list[BuildResult]:
    """Finished builds under `out` older than `before_version`, newest first."""
    found = []
    if not os.path.isdir(out):
        return found
    for name in os.listdir(out):
        path = Path(out) / name / BUILD_JSON
        if name.startswith("v") and path.is_file():
            try:
                b = BuildResult.load(str(path.parent))
            except (BuildError, ValueError):
                continue
            if b.version < before_version:
                found.append(b)
    return sorted(found, key=lambda b: -b.version)


def next_version(out: str) -> int:
    """One more than the newest finished build under `out` (1 for the first)."""
    builds = previous_builds(out, 2**62)
    return builds[0].version + 1 if builds else 1

