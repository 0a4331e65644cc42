"""On-device student: a small Keras model over raw ring-time facts, distilled from the teacher.

Every transform (log scaling, normalisation, digit-prefix hashing, embeddings) is inside the graph;
the phone only fills the three input tensors that `callmark.model.encode` builds. TensorFlow/Keras
are imported lazily inside the functions that need them.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from callmark import categories
from callmark import model as cm
from trainer import features
from trainer.holdout import HOLDOUT_SHARE, held_out
from trainer.model import import_tensorflow

FACT_NAMES = [n for n, _, _ in cm.FACT_FIELDS]
CODE_SIZES = (categories.MAX_CODE + 1, 24, 7, len(cm.VERIFICATION), len(cm.NUMBER_TYPES))
CLASSES = [c.code for c in categories.CATEGORIES]  # output order of `probs`
_FIB = [0, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377]
# in-graph bucket thresholds per fact (value >= t moves one bucket up), in the contract's units
THRESHOLDS = {
    "pack_confidence": [1, 100, 200, 300, 400, 500, 600, 700, 800, 900, 950, 990],
    "pack_reporters": _FIB[1:],
    "prior_calls": _FIB[1:], "prior_answered": _FIB[1:],
    "last_talk_s": [1, 5, 10, 20, 30, 60, 120, 180, 300, 600, 1200, 3600],
    "days_since_last": [1, 2, 4, 8, 12, 24, 48, 72, 168, 336, 720, 2160],  # hours
    "pack_block_harmful": [1, 2, 3, 5, 8, 13],
}
N_THRESH = max(len(v) for v in THRESHOLDS.values())


def threshold_matrix() -> np.ndarray:
    """[facts, N_THRESH] int32 thresholds; flags get [1] and padding that is never reached."""
    rows = [THRESHOLDS.get(n, [1]) for n in FACT_NAMES]
    return np.asarray([r + [2**30] * (N_THRESH - len(r)) for r in rows], dtype=np.int32)


CALIBRATION_TARGETS = ("labels", "risk_target")  # StudentConfig.calibrate_to


class StudentError(ValueError):
    """Student training input or settings that cannot work."""


class ArtefactCheckError(RuntimeError):
    """The exported .tflite disagrees with the Keras model beyond the allowed tolerance."""


@dataclass
class StudentConfig:
    """Student training settings."""

    # Number identity (issue 14): with one embedding per (digit, position) and the hashed 100-number
    # block, the net learnt callers by number: the validation callers' risk loss rose from the first
    # epoch, the best epoch was the first in every demo build and held-out risk AUC moved by 3 points
    # between days (0.900 vs 0.937 on the same calls). Without them, and with a smaller step, the
    # validation loss falls for 3-4 epochs and day 2's model is within 0.01 of day 1's (docs/models.md).
    epochs: int = 12
    batch_size: int = 256
    learning_rate: float = 5e-4
    hidden: tuple[int, ...] = (64,)  # dense units
    activation: str = "relu6"  # hidden activation; bounded so its int8 range is known (0..6)
    logit_clip: float = 6.0  # logits clipped to [-this, this*127/128]: the fixed int8 grid of the logits
    dropout: float = 0.5  # share of embedding outputs dropped while training (against memorising callers)
    val_share: float = 0.1  # share of training callers held out for early stopping
    patience: int = 3  # epochs without a better validation risk loss before stopping (0 = never stop)
    qat: bool = True  # fake-quantise hidden activations and logits onto their int8 grids (train + infer)
    # E.164 digits hashed into prefix embeddings: country + carrier range (5 digits) and the 10k-number
    # block (8): ranges that scam SIM batches share, wide enough to hold many callers each. The
    # 100-number block (11) and per-digit embeddings are off: they spell out single callers.
    prefix_lengths: tuple[int, ...] = (5, 8)
    prefix_buckets: tuple[int, ...] = (1031, 2053)
    digit_embedding: bool = False  # one embedding per (position, digit): together they can spell a caller
    calibrate: bool = True  # Platt-scale the risk logit on the validation callers (folded into the weights)
    # what the Platt map is fitted to: "labels" (each validation call's label in the training data: in a
    # build the caller's crowd label, untagged = honest; the unit the phone's risk is read in) or
    # "risk_target" (the training risk target: the teacher's per-number score when distilling, which
    # over-states heavy honest callers: risk ECE 0.100 / 0.081 vs 0.070 / 0.059 with "labels", demo
    # builds, docs/benchmarks.md)
    calibrate_to: str = "labels"  # one of CALIBRATION_TARGETS
    min_calibration_events: int = 2000  # fewer validation calls: no calibration (two parameters overfit)
    embed_dim: int = 4
    distill_weight: float = 0.5  # risk target = (1 - w) * truth + w * teacher score
    soft_classes: bool = False  # callers missing from truth: class target spread by the teacher score
    test_share: float = HOLDOUT_SHARE  # share of caller numbers held out (by key hash) for checks and evaluation
    representative_rows: int = 500  # int8 calibration rows (with qat no range depends on them)
    check_rows: int = 5000  # held-out rows compared Keras vs LiteRT
    min_agreement: float = 0.995  # top-1 agreement Keras vs LiteRT
    max_prob_diff: float = 0.02
    max_bytes: int = 64 * 1024
    vector_atol: float = 0.01  # tolerance when a phone replays test vectors
    enforce_checks: bool = False  # raise ArtefactCheckError (else record failures in metrics.json)
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "StudentConfig":
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise StudentError(f"unknown student config keys {sorted(unknown)}")
        d = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**d)


def is_test_number(number: str, share: float = HOLDOUT_SHARE, salt: str = "") -> bool:
    """Stable hold-out split by caller number key (never by call), so test callers are unseen;
    the same rule in every build (`trainer.holdout`). `salt` draws an independent split (the
    validation callers inside the training callers)."""
    return held_out(number, share, salt)


def class_index(keys: list[str]) -> np.ndarray:
    index = {categories.by_code(c).key: i for i, c in enumerate(CLASSES)}
    return np.asarray([index[k] for k in keys], dtype=np.int64)


def class_targets(ev: features.RingEvents, harmful_score: np.ndarray | None = None) -> np.ndarray:
    """[events, classes] float32 targets of the `probs` head.

    One-hot of the caller's category where the truth file knows the caller. With `harmful_score`
    (the teacher's probability per event), a caller the truth file does not know (no crowd label:
    counted honest) gets `(1 - s) * legit + s * prior`, where `prior` is the share of each harmful
    class among the known harmful calls: an untagged harasser is not taught "legit" with certainty,
    which is what pushed the per-class AUC of thinly tagged classes to chance."""
    idx = class_index(ev.category)
    y = np.zeros((len(idx), len(CLASSES)), dtype=np.float32)
    y[np.arange(len(idx)), idx] = 1.0
    if harmful_score is None or ev.known is None or ev.known.all():
        return y
    harmful = np.asarray([categories.by_code(c).harmful for c in CLASSES])
    counts = y[ev.known & (ev.harmful == 1)].sum(0) * harmful
    prior = counts / counts.sum() if counts.sum() > 0 else harmful / harmful.sum()
    legit = np.zeros(len(CLASSES), dtype=np.float32)
    legit[CLASSES.index(categories.by_key("legit").code)] = 1.0
    s = np.clip(harmful_score[~ev.known], 0.0, 1.0)[:, None]
    y[~ev.known] = (1 - s) * legit + s * prior
    return y


def calibrate_risk(model, X_val: dict[str, np.ndarray], target: np.ndarray) -> dict:
    """Platt scaling of the risk head on validation callers (never trained on): fit a, c so that
    sigmoid(a * z + c) matches the (soft) risk targets, z the model's risk logit, by Newton steps
    on the cross-entropy; then fold them into the `risk_logit` Dense layer (W <- aW, b <- ab + c).

    Memorised training callers make the raw risk over-confident on unseen callers; validation callers
    are unseen, as phones' callers are. Returns {"a", "c", "val_ece_before", "val_ece_after"}."""
    p = np.asarray(model.predict(X_val, verbose=0, batch_size=2048)["risk"]).reshape(-1).astype(np.float64)
    p = np.clip(p, 1e-4, 1 - 1e-4)
    z, t = np.log(p / (1 - p)), np.asarray(target, dtype=np.float64)
    from scipy.special import expit

    a, c = 1.0, 0.0
    for _ in range(50):  # damped Newton, kept inside a sane range (hard 0/1 targets can be separable)
        q = expit(a * z + c)
        g = np.array([((q - t) * z).mean(), (q - t).mean()])
        w = q * (1 - q)
        h = np.array([[(w * z * z).mean(), (w * z).mean()], [(w * z).mean(), w.mean()]]) + 1e-4 * np.eye(2)
        step = np.clip(np.linalg.solve(h, g), -1.0, 1.0)
        a, c = float(np.clip(a - step[0], 0.05, 20.0)), float(np.clip(c - step[1], -10.0, 10.0))
        if np.abs(step).max() < 1e-6:
            break
    layer = model.get_layer("risk_logit")
    kernel, bias = layer.get_weights()
    layer.set_weights([kernel * a, bias * a + c])

    def ece(pp):
        which = np.clip((pp * 10).astype(int), 0, 9)
        return float(sum(abs(pp[which == b].mean() - t[which == b].mean()) * (which == b).mean()
                         for b in range(10) if (which == b).any()))
    return {"a": round(a, 4), "c": round(float(c), 4), "val_ece_before": round(ece(p), 4),
            "val_ece_after": round(ece(expit(a * z + c)), 4)}


def logit_range(clip: float) -> tuple[float, float]:
    """int8 grid for logits: step clip/128 with zero exactly on the grid ([-clip, clip - step])."""
    return -clip, clip - clip / 128


def build_keras(cfg: StudentConfig, act: str | None = None, logit_clip: float | None = None):
    """The Keras graph: three int32 tensors in, {"probs", "risk"} out.

    Every input becomes an index into one shared embedding table: the hashed E.164 prefixes of
    `cfg.prefix_lengths` (plus digit x position with `cfg.digit_embedding`), the five codes, and
    each fact bucketised by THRESHOLDS. Integer inputs and one int8 table keep the full-integer
    model as accurate as the float one. With `cfg.qat` the hidden activations (bounded by
    `cfg.activation`, ReLU6) and the logits are fake-quantised onto fixed int8 grids during
    training and inference; the TFLite converter takes those ranges, so Keras and
    the int8 file round the same values the same way.
    """
    import_tensorflow()  # first: registers the Keras hooks the TFLite converter needs
    import keras
    from keras import layers, ops, quantizers

    act = act or cfg.activation
    clip = cfg.logit_clip if logit_clip is None else logit_clip
    keras.utils.set_random_seed(cfg.seed)
    digits = keras.Input((cm.DIGITS,), dtype="int32", name="digits")
    codes = keras.Input((len(cm.CODE_FIELDS),), dtype="int32", name="codes")
    facts = keras.Input((len(FACT_NAMES),), dtype="int32", name="facts")

    def const(a):
        return np.asarray(a, dtype="int32").reshape(1, -1)

    # constants go first in ops.add: keeps Keras from emitting an int32 BiasAdd, which TFLite lacks
    index, base = [], 0
    d = ops.clip(digits, 0, cm.DIGIT_PAD)
    if cfg.digit_embedding:
        index.append(ops.add(const(np.arange(cm.DIGITS) * 11 + base), d))
        base += cm.DIGITS * 11
    for k, buckets in zip(cfg.prefix_lengths, cfg.prefix_buckets):
        value = ops.sum(ops.multiply(const(10 ** np.arange(k - 1, -1, -1)), d[:, :k]), axis=1, keepdims=True)
        index.append(ops.add(const([base]), ops.mod(value, buckets)))
        base += buckets
    hi = const(np.asarray(CODE_SIZES) - 1)
    c = ops.minimum(hi, ops.maximum(const(np.zeros(len(CODE_SIZES))), codes))
    index.append(ops.add(const(base + np.concatenate([[0], np.cumsum(CODE_SIZES)[:-1]])), c))
    base += int(sum(CODE_SIZES))
    thr = threshold_matrix()
    ge = ops.greater_equal(ops.expand_dims(facts, -1), thr.reshape(1, *thr.shape))
    bucket = ops.sum(ops.cast(ge, "int32"), axis=-1)
    index.append(ops.add(const(base + np.arange(len(FACT_NAMES)) * (N_THRESH + 1)), bucket))
    base += len(FACT_NAMES) * (N_THRESH + 1)
    idx = layers.Concatenate(axis=1)(index)
    x = layers.Flatten()(layers.Embedding(base, cfg.embed_dim, name="table")(idx))
    if cfg.dropout:
        x = layers.Dropout(cfg.dropout, seed=cfg.seed)(x)  # training only: the exported graph has none
    for units in cfg.hidden:
        x = layers.Dense(units, activation=act)(x)
        if cfg.qat:
            if act != "relu6":
                raise StudentError("qat needs a bounded hidden activation: set activation='relu6'")
            x = quantizers.fake_quant_with_min_max_vars(x, 0.0, 6.0)
    logits = layers.Dense(len(CLASSES), name="class_logits")(x)
    risk_logit = layers.Dense(1, name="risk_logit")(x)
    if clip:
        lo, hi_ = logit_range(clip)
        if cfg.qat:
            logits = quantizers.fake_quant_with_min_max_vars(logits, lo, hi_)
            risk_logit = quantizers.fake_quant_with_min_max_vars(risk_logit, lo, hi_)
        else:
            logits, risk_logit = ops.clip(logits, lo, hi_), ops.clip(risk_logit, lo, hi_)
    elif cfg.qat:
        raise StudentError("qat needs logit_clip > 0 (the logits' fixed int8 range)")
    probs = layers.Activation("softmax", name="probs")(logits)
    risk = layers.Activation("sigmoid", name="risk")(risk_logit)
    return keras.Model({"digits": digits, "codes": codes, "facts": facts}, {"probs": probs, "risk": risk})


def dense_input_scales(model, cfg: StudentConfig) -> dict[str, float]:
    """int8 scale of each Dense layer's input where it is fixed: the embedding table's grid for the
    first layer(s), the fake-quantised ReLU6 grid (6/255) after a hidden layer (only with `cfg.qat`)."""
    import keras

    from trainer.model import convert

    table = convert.asymmetric_scale(model.get_layer("table").get_weights()[0])
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    hidden = [layer for layer in dense if layer.name not in ("class_logits", "risk_logit")]
    heads = [layer for layer in dense if layer not in hidden]
    if not hidden:
        return {layer.name: table for layer in heads}
    scales = {hidden[0].name: table}
    if cfg.qat:
        scales.update({layer.name: 6.0 / 255 for layer in hidden[1:] + heads})
    return scales


def encode_events(ev: features.RingEvents) -> dict[str, np.ndarray]:
    """All events through the phone's own encoder (callmark.model.encode)."""
    return cm.encode_batch(ev.facts)


def teacher_soft_scores(data_dir, config=None, labels: dict[str, int] | None = None) -> dict[str, float]:
    """Teacher scores per caller from call-behaviour aggregates: out-of-fold for labelled numbers."""
    from trainer.model import teacher

    table = features.aggregate_calls(Path(data_dir) / "calls.csv")
    if labels is None:
        table.y = features.number_labels(table, Path(data_dir) / "truth.csv")
    else:
        table.y = np.asarray([labels.get(i, 0) for i in table.ids], dtype=np.int64)
    if table.y.min() == table.y.max():
        raise StudentError("the teacher needs both harmful and honest numbers in the data")
    folds = int(min(5, max(2, min(table.y.sum(), len(table.y) - table.y.sum()))))
    scores = teacher.oof_scores(table, config, folds=folds)
    return dict(zip(table.ids, scores.tolist()))


def train_student(data_dir, out_dir, config: StudentConfig | None = None, *, labels_csv=None,
                  teacher_scores: dict[str, float] | None = None, distill: bool = True,
                  events: features.RingEvents | None = None) -> Path:
    """Train, convert to int8 TFLite, check the artefact and write a model directory.

    `data_dir`: simulator output (calls.csv, truth.csv, tags.jsonl, verified.csv). Targets: truth
    categories; risk target blends truth with the teacher's out-of-fold score (distillation) unless
    `distill=False`. Writes model.tflite, contract.json, test_vectors.json, metrics.json.
    """
    from trainer.model import convert

    cfg = config or StudentConfig()
    if cfg.calibrate_to not in CALIBRATION_TARGETS:
        raise StudentError(f"calibrate_to must be one of {CALIBRATION_TARGETS}, not {cfg.calibrate_to!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    ev = events or features.ring_events(data_dir, labels_csv=labels_csv, seed=cfg.seed)
    if distill and teacher_scores is None:
        teacher_scores = teacher_soft_scores(data_dir)
    X = encode_events(ev)
    y_hard = ev.harmful.astype(np.float32)
    soft = np.asarray([teacher_scores.get(c, h) for c, h in zip(ev.caller, y_hard)], dtype=np.float32) \
        if distill and teacher_scores else y_hard
    y_risk = (1 - cfg.distill_weight) * y_hard + cfg.distill_weight * soft if distill else y_hard
    y_cls = class_targets(ev, soft if cfg.soft_classes and distill and teacher_scores else None)
    test = np.asarray([is_test_number(c, cfg.test_share) for c in ev.caller])
    if test.all() or not test.any():
        raise StudentError("the hold-out split left no training or no test calls; use more data")
    tr = ~test
    t_prep = time.time() - t0

    import_tensorflow()
    import keras
    model = build_keras(cfg, logit_clip=cfg.logit_clip)
    model.compile(keras.optimizers.Adam(cfg.learning_rate),
                  loss={"probs": "categorical_crossentropy", "risk": "binary_crossentropy"})
    # early stopping on validation callers drawn from the training callers (never the test callers):
    # the digit and prefix embeddings can memorise callers, so held-out loss rises after a few epochs
    val = tr & np.asarray([is_test_number(c, cfg.val_share, salt="val:") for c in ev.caller])
    use_val = cfg.patience > 0 and val.any() and (tr & ~val).any()
    fit = tr & ~val if use_val else tr
    callbacks, validation = [], None
    if use_val:
        validation = ({k: v[val] for k, v in X.items()}, {"probs": y_cls[val], "risk": y_risk[val][:, None]})
        callbacks = [keras.callbacks.EarlyStopping(monitor="val_risk_loss", mode="min", patience=cfg.patience,
                                                   restore_best_weights=True)]
    hist = model.fit({k: v[fit] for k, v in X.items()}, {"probs": y_cls[fit], "risk": y_risk[fit][:, None]},
                     epochs=cfg.epochs, batch_size=cfg.batch_size, verbose=0, shuffle=True,
                     validation_data=validation, callbacks=callbacks)
    val_loss = hist.history.get("val_risk_loss", [])
    t_fit = time.time() - t0 - t_prep

    calibration = None
    if cfg.calibrate and use_val and val.sum() >= cfg.min_calibration_events:
        target = y_hard if cfg.calibrate_to == "labels" else y_risk
        calibration = dict(calibrate_risk(model, {k: v[val] for k, v in X.items()}, target[val]),
                           target=cfg.calibrate_to)
    elif cfg.calibrate:
        calibration = {"skipped": f"{int(val.sum()) if use_val else 0} validation calls < "
                                  f"{cfg.min_calibration_events}: too few to fit a calibration on"}
    convert.snap_to_int8_grid(model, dense_input_scales(model, cfg))  # Keras now holds the file's weights
    rng = np.random.default_rng(cfg.seed)
    rep_idx = rng.choice(np.flatnonzero(tr), size=min(cfg.representative_rows, int(tr.sum())), replace=False)
    tflite = convert.to_int8_tflite(model, {k: v[rep_idx] for k, v in X.items()})
    (out / "model.tflite").write_bytes(tflite)

    test_idx = np.flatnonzero(test)
    check_idx = rng.choice(test_idx, size=min(cfg.check_rows, len(test_idx)), replace=False)
    Xc = {k: v[check_idx] for k, v in X.items()}
    keras_out = {k: np.asarray(v) for k, v in model.predict(Xc, verbose=0, batch_size=1024).items()}
    contract = cm.Contract(inputs=cm.input_specs(), outputs=[
        {"name": "probs", "dtype": "float32", "shape": [1, len(CLASSES)], "unit": "probability per class"},
        {"name": "risk", "dtype": "float32", "shape": [1, 1], "unit": "probability the caller is harmful"}],
        classes=CLASSES, extra={"test_vector_atol": cfg.vector_atol, "quantization": "int8 full-integer",
                                "fact_thresholds": THRESHOLDS})
    (out / "contract.json").write_text(json.dumps(contract.to_dict(), indent=2, ensure_ascii=False))
    lite_out = convert.run_litert(out, Xc)
    check = convert.compare(keras_out, lite_out)
    vectors = convert.test_vectors([ev.facts[i] for i in check_idx[:24]] + convert.EDGE_CASES, out)
    (out / "test_vectors.json").write_text(json.dumps(vectors, indent=1, ensure_ascii=False))
    size = len(tflite)
    metrics = {
        "format": 1, "kind": "student", "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "size_bytes": size, "params": int(model.count_params()), "config": cfg.to_dict(),
        "data": {"dir": str(data_dir), "events": len(ev.facts), "train_events": int(tr.sum()),
                 "test_events": int(test.sum()), "distilled": bool(distill and teacher_scores), **ev.meta},
        "training": {"epochs_run": len(hist.history.get("loss", [])),
                     "best_epoch": int(np.argmin(val_loss)) + 1 if val_loss else None,
                     "val_risk_loss": [round(float(v), 4) for v in val_loss],
                     "fit_events": int(fit.sum()), "val_events": int(val.sum()) if use_val else 0,
                     "risk_calibration": calibration},
        "artefact_check": check, "seconds": {"prepare": round(t_prep, 1), "fit": round(t_fit, 1),
                                             "total": round(time.time() - t0, 1)},
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    problems = convert.artefact_problems(check, cfg.to_dict())
    if size > cfg.max_bytes:
        problems.append(f"model.tflite is {size} bytes > {cfg.max_bytes}")
    check["passed"] = not problems
    check["problems"] = problems
    metrics["artefact_check"] = check
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    if problems and cfg.enforce_checks:
        raise ArtefactCheckError(f"{out}/model.tflite failed its artefact checks: " + "; ".join(problems))
    return out
