"""Keras -> full-integer int8 TFLite (built-in ops only) and the artefact checks on the exported file.

LiteRT runs in a child process (`python -m callmark.model run ...`), so TensorFlow and
ai-edge-litert never share a process.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from callmark import categories

# Raw-fact edge cases every build's test vectors include.
EDGE_CASES: list[dict] = [
    {"number": "", "hour": 3, "verification": "none"},  # hidden caller
    {"number": "+86 170 0000 1234", "hour": 2, "weekday": 6, "verification": "failed"},
    {"number": "008613800138000", "hour": 10, "verification": "passed", "in_contacts": True,
     "prior_calls": 12, "prior_answered": 11, "last_talk_s": 300, "days_since_last": 1.5},
    {"number": "95588", "hour": 11, "pack_category": "customer_service", "pack_confidence": 0.99,
     "pack_verified": True},
    {"number": "+8613912345678", "hour": 14, "pack_category": "fraud", "pack_confidence": 0.8,
     "pack_reporters": 40},
    {"number": "+8613912345699", "hour": 15, "pack_block_harmful": 7},
    {"number": "+12025550123", "hour": 4, "verification": "none"},
    {"number": "4008001234", "hour": 9, "pack_category": "telemarketing", "pack_confidence": 0.5,
     "pack_reporters": 3, "pack_model_derived": True},
    {"number": "abc-irregular", "hour": 23},
]


class ConversionError(RuntimeError):
    """The converter produced no model or one that uses non-built-in ops."""


def asymmetric_scale(w: np.ndarray) -> float:
    """Scale of the per-tensor asymmetric int8 grid the converter gives a constant table."""
    lo, hi = min(float(w.min()), 0.0), max(float(w.max()), 0.0)
    return (hi - lo) / 255.0


def int8_grid_asymmetric(w: np.ndarray) -> np.ndarray:
    """`w` rounded onto the per-tensor asymmetric int8 grid the converter gives a constant table.

    scale = (max - min) / 255 over the range widened to hold 0, zero point rounded; the extremes land
    on -128 and 127, so converting the rounded table again yields the same grid (a fixed point).
    """
    scale = asymmetric_scale(w)
    if scale == 0:
        return w.copy()
    zp = np.round(-128 - min(float(w.min()), 0.0) / scale)
    return ((np.clip(np.round(w / scale) + zp, -128, 127) - zp) * scale).astype(w.dtype)


def per_channel_scales(w: np.ndarray) -> np.ndarray:
    """Symmetric per-output-channel int8 scales of a Dense kernel [in, out]: max|w| / 127."""
    scale = np.abs(w).max(axis=0) / 127.0
    scale[scale == 0] = 1.0
    return scale


def int8_grid_per_channel(w: np.ndarray) -> np.ndarray:
    """Dense kernel [in, out] rounded onto the symmetric per-output-channel int8 grid (scale max|w|/127)."""
    scale = per_channel_scales(w)[None, :]
    return (np.round(w / scale) * scale).astype(w.dtype)


def snap_to_int8_grid(model, input_scales: dict[str, float] | None = None) -> None:
    """Round embedding tables, dense kernels and (given the input scale) biases onto the values the
    converter will store, in place.

    The Keras model then carries exactly the weights of the .tflite, so weight rounding no longer
    shows up as a Keras-vs-LiteRT difference. `input_scales` maps a Dense layer's name to the int8
    scale of its input; its bias is int32 with scale input_scale * kernel_scale in the file, and
    rounding it too removes the last offset that can tip an activation across a rounding boundary.
    """
    import keras

    input_scales = input_scales or {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.Embedding):
            layer.set_weights([int8_grid_asymmetric(layer.get_weights()[0])])
        elif isinstance(layer, keras.layers.Dense):
            kernel, *rest = layer.get_weights()
            if rest and layer.name in input_scales:
                step = input_scales[layer.name] * per_channel_scales(kernel)
                rest[0] = (np.round(rest[0] / step) * step).astype(rest[0].dtype)
            layer.set_weights([int8_grid_per_channel(kernel), *rest])


def to_int8_tflite(model, representative: dict[str, np.ndarray]) -> bytes:
    """Full-integer int8 conversion (TFLITE_BUILTINS_INT8 only; int32 index inputs stay int32)."""
    from trainer.model import import_tensorflow, native_output_silenced

    tf = import_tensorflow()

    n = len(next(iter(representative.values())))

    def rep():
        for i in range(n):
            yield {k: v[i:i + 1] for k, v in representative.items()}

    with tempfile.TemporaryDirectory() as tmp:
        try:
            model.export(tmp, format="tf_saved_model", verbose=False)
        except Exception as exc:  # Keras raises many types; report them as one
            raise ConversionError(f"SavedModel export failed: {str(exc).splitlines()[0]}") from exc
        with native_output_silenced():  # the converter's calibration prints banners from C++
            return _convert(tf.lite.TFLiteConverter.from_saved_model(tmp), rep)


def _convert(conv, rep) -> bytes:
    import tensorflow as tf

    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = rep
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    try:
        blob = conv.convert()
    except Exception as exc:  # the converter raises many types; report them as one
        raise ConversionError(f"TFLite int8 conversion failed: {str(exc).splitlines()[0]}") from exc
    if not blob:
        raise ConversionError("TFLite converter returned an empty model")
    return blob


def _child(args: list[str]) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[2]),
                                                        os.environ.get("PYTHONPATH", "")]))
    res = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise ConversionError(f"LiteRT child process failed: {res.stderr.strip().splitlines()[-1:]}")


def run_litert(model_dir, tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run encoded rows through the exported model.tflite with ai-edge-litert (child process)."""
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
        np.savez(src, **tensors)
        _child(["-m", "callmark.model", "run", str(model_dir), str(src), str(dst)])
        data = np.load(dst)
        return {k: np.asarray(data[k]) for k in ("probs", "risk")}


def compare(keras_out: dict, lite_out: dict) -> dict:
    """Keras vs LiteRT on the same rows: top-1 agreement, max probability difference."""
    kp, lp = keras_out["probs"], lite_out["probs"]
    strict = float((kp.argmax(1) == lp.argmax(1)).mean())
    # tie-aware: LiteRT's int8 probabilities are multiples of 1/256, so two classes can tie exactly
    tie = float((lp[np.arange(len(lp)), kp.argmax(1)] >= lp.max(1) - 1e-7).mean())
    return {"rows": int(len(kp)), "top1_agreement": strict, "top1_agreement_tie_aware": tie,
            "max_prob_diff": float(np.abs(kp - lp).max()),
            "p999_prob_diff": float(np.quantile(np.abs(kp - lp).max(1), 0.999)),
            "mean_prob_diff": float(np.abs(kp - lp).mean()),
            "max_risk_diff": float(np.abs(keras_out["risk"].reshape(-1) - lite_out["risk"].reshape(-1)).max())}


# A broken conversion moves many rows; int8 rounding of a steep (calibrated) sigmoid can move one row
# of thousands a few 1/256 steps. So: 99.9th percentile within max_prob_diff, every row within
# OUTLIER_PROB_DIFF (a demo run refused a model at max 0.0224 with top-1 1.0 and mean 0.0008).
OUTLIER_PROB_DIFF = 0.05


def artefact_problems(check: dict, cfg: dict) -> list[str]:
    """Keras-vs-LiteRT check (the dict `compare` returns) against the limits in a student config dict
    (`min_agreement`, `max_prob_diff`) -> list of problems, empty when the export is faithful."""
    problems = []
    min_agreement, limit = cfg.get("min_agreement", 0.995), cfg.get("max_prob_diff", 0.02)
    if check.get("top1_agreement_tie_aware", 0) < min_agreement:
        problems.append(f"LiteRT/Keras top-1 agreement {check.get('top1_agreement_tie_aware')} < {min_agreement}")
    worst = max(check.get("max_prob_diff", 1), check.get("max_risk_diff", 1))
    typical = check.get("p999_prob_diff", worst)
    if typical > limit:
        problems.append(f"LiteRT/Keras 99.9th-percentile probability difference {typical:.4f} > {limit}")
    if worst > OUTLIER_PROB_DIFF:
        problems.append(f"LiteRT/Keras max probability difference {worst:.4f} > {OUTLIER_PROB_DIFF}")
    return problems


def test_vectors(raw_facts: list[dict], model_dir) -> dict:
    """Raw inputs -> expected outputs of the exported file (computed through callmark.model)."""
    from callmark import model as cm

    rows = [dict(f) for f in raw_facts]
    for r in rows:  # JSON-safe values
        for k, v in list(r.items()):
            if isinstance(v, (np.generic,)):
                r[k] = v.item()
    tensors = cm.encode_batch(rows)
    out = run_litert(model_dir, tensors)
    keys = [categories.by_code(c).key for c in json.loads((Path(model_dir) / "contract.json").read_text())["classes"]]
    vectors = [{"input": r, "tensors": {k: v[i].tolist() for k, v in tensors.items()},
                "expected": {"risk": float(out["risk"][i][0]),
                             "probs": {k: float(p) for k, p in zip(keys, out["probs"][i])}}}
               for i, r in enumerate(rows)]
    return {"format": 1, "vectors": vectors}
