"""Client-side runner for the on-device caller model (`model.tflite` + `contract.json`).

A phone (and `tools/handset.py`) builds the model's input tensors from raw facts it has when a call
rings, exactly as `contract.json` says, and runs the int8 LiteRT model. The encoding lives here, in
the shared contract package, so training and the phone cannot compute a feature differently.
Imports neither TensorFlow nor `trainer/`.

Raw facts (`dict`, every key optional except `number`; see docs/feature-contract.md):
  number (str, as presented), hour (0-23 local), weekday (0=Mon), verification (passed|failed|none),
  in_contacts (bool), pack_category (category key or code; absent = not in pack), pack_confidence
  (0-1), pack_reporters (count), pack_verified (bool), pack_model_derived (bool), prior_calls,
  prior_answered (counts), last_talk_s (seconds), days_since_last (days), pack_block_harmful (count
  of other numbers in the caller's 100-number block with a harmful pack label:
  `callmark.pack.PackReader.block_harmful`).
"""
from __future__ import annotations

import functools
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from callmark import categories, numbers
from callmark.errors import CallmarkError

CONTRACT_FORMAT = 1
DIGITS = 16  # E.164 digits without '+', left-aligned
DIGIT_PAD = 10  # digit value used for padding
VERIFICATION = ("none", "passed", "failed")
NUMBER_TYPES = ("unknown", "mobile", "fixed_line", "fixed_line_or_mobile", "toll_free",
                "shared_cost", "premium", "voip", "mvno", "short_service", "personal", "uan",
                "pager", "voicemail")


class ModelContractError(CallmarkError, ValueError):
    """A model directory whose contract.json, .tflite or test vectors do not fit together."""


class RawFactsError(CallmarkError, ValueError):
    """Raw call facts that cannot be encoded (wrong type or out of range)."""


@functools.lru_cache(maxsize=200_000)
def number_facts(raw: str) -> tuple[tuple[int, ...], int, float, float, float]:
    """(digits, number_type index, hidden, international, irregular) for a presented caller string."""
    raw = "" if raw is None else str(raw)
    facts = numbers.normalize(raw)
    if facts.e164:
        digit_str = facts.e164.lstrip("+")
    else:
        digit_str = "".join(ch for ch in raw if ch.isdigit())
    digits = [int(c) for c in digit_str[:DIGITS]]
    digits += [DIGIT_PAD] * (DIGITS - len(digits))
    type_idx = NUMBER_TYPES.index(facts.type) if facts.type in NUMBER_TYPES else 0
    hidden = 1.0 if not raw.strip() else 0.0
    international = 1.0 if facts.country_code not in (None, 86) else 0.0
    irregular = 1.0 if facts.irregular else 0.0
    return tuple(digits), type_idx, hidden, international, irregular


def _num(facts: dict, name: str, default: float) -> float:
    value = facts.get(name, default)
    if value is None or value == "":
        return float(default)
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise RawFactsError(f"raw fact {name!r} must be a number, got {value!r}") from None
    if math.isnan(out):
        return float(default)
    return out


def _category_code(value) -> int:
    if value in (None, "", 0, "0"):
        return 0
    if isinstance(value, str) and not value.isdigit():
        return categories.by_key(value).code
    return categories.by_code(int(value)).code


def _verification(value) -> int:
    if value in (None, ""):
        return 0
    text = str(value).lower()
    if text not in VERIFICATION:
        raise RawFactsError(f"verification must be one of {', '.join(VERIFICATION)}; got {value!r}")
    return VERIFICATION.index(text)


def encode_codes(facts: dict, nf) -> list[int]:
    """The `codes` int32 row: pack category code, hour, weekday, verification, number type."""
    hour = int(_num(facts, "hour", 12))
    weekday = int(_num(facts, "weekday", 0))
    if not 0 <= hour <= 23:
        raise RawFactsError(f"hour must be 0..23 (local time), got {hour}")
    if not 0 <= weekday <= 6:
        raise RawFactsError(f"weekday must be 0..6 (Monday=0), got {weekday}")
    return [_category_code(facts.get("pack_category")), hour, weekday,
            _verification(facts.get("verification")), nf[1]]


# int32 `facts` row: (name, unit, scale from the raw fact); order is part of the contract.
FACT_FIELDS: tuple[tuple[str, str, float], ...] = (
    ("pack_confidence", "per mille", 1000.0), ("pack_reporters", "count", 1.0),
    ("pack_verified", "0/1", 1.0), ("pack_model_derived", "0/1", 1.0),
    ("prior_calls", "count", 1.0), ("prior_answered", "count", 1.0),
    ("last_talk_s", "seconds", 1.0), ("days_since_last", "hours", 24.0),
    ("in_contacts", "0/1", 1.0), ("hidden", "0/1", 1.0), ("international", "0/1", 1.0),
    ("irregular", "0/1", 1.0), ("pack_block_harmful", "count", 1.0),
)
CODE_FIELDS = ("pack_category", "hour", "weekday", "verification", "number_type")
_INT_MAX = 2**30


def encode(facts: dict) -> dict[str, np.ndarray]:
    """Raw facts of one ringing call -> the model's input tensors (batch of one, all int32)."""
    if not isinstance(facts, dict) or "number" not in facts:
        raise RawFactsError("raw facts must be a dict with at least a 'number' (caller string)")
    nf = number_facts(str(facts["number"]) if facts["number"] is not None else "")
    derived = {"hidden": nf[2], "international": nf[3], "irregular": nf[4]}
    row = []
    for name, _unit, scale in FACT_FIELDS:
        value = derived[name] if name in derived else _num(facts, name, 0.0)
        if value < 0:
            raise RawFactsError(f"raw fact {name!r} must not be negative, got {value}")
        row.append(int(min(round(value * scale), _INT_MAX)))
    return {
        "digits": np.asarray([nf[0]], dtype=np.int32),
        "codes": np.asarray([encode_codes(facts, nf)], dtype=np.int32),
        "facts": np.asarray([row], dtype=np.int32),
    }


def encode_batch(rows: list[dict]) -> dict[str, np.ndarray]:
    """Encode many raw-fact dicts at once (same result as `encode` row by row)."""
    enc = [encode(r) for r in rows]
    return {k: np.concatenate([e[k] for e in enc]) for k in ("digits", "codes", "facts")}


def input_specs() -> list[dict]:
    """The input tensors this encoder produces (written into contract.json by the trainer)."""
    return [
        {"name": "digits", "dtype": "int32", "shape": [1, DIGITS], "unit": "digit 0-9, 10 = pad",
         "fields": ["E.164 digits without '+', left-aligned"]},
        {"name": "codes", "dtype": "int32", "shape": [1, len(CODE_FIELDS)], "unit": "code",
         "fields": list(CODE_FIELDS)},
        {"name": "facts", "dtype": "int32", "shape": [1, len(FACT_FIELDS)],
         "unit": "see fields", "fields": [f"{n} ({u})" for n, u, _ in FACT_FIELDS]},
    ]


@dataclass
class Contract:
    """contract.json: what the model takes and returns."""

    inputs: list[dict]
    outputs: list[dict]
    classes: list[int]  # category codes, in output order
    format: int = CONTRACT_FORMAT
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"format": self.format, "inputs": self.inputs, "outputs": self.outputs,
                "classes": self.classes, "class_keys": [categories.by_code(c).key for c in self.classes],
                **self.extra}

    @classmethod
    def from_dict(cls, d: dict) -> "Contract":
        """Parse and verify a contract; raises ModelContractError on anything this client cannot run."""
        if not isinstance(d, dict):
            raise ModelContractError("contract.json must hold a JSON object")
        if d.get("format") != CONTRACT_FORMAT:
            raise ModelContractError(
                f"contract format {d.get('format')!r} is not supported (this client reads {CONTRACT_FORMAT})")
        want = input_specs()
        got = d.get("inputs")
        if not isinstance(got, list) or [(i.get("name"), i.get("dtype"), i.get("shape"), i.get("fields"))
                                         for i in got] != [(i["name"], i["dtype"], i["shape"], i["fields"])
                                                           for i in want]:
            raise ModelContractError("contract inputs differ from what this client encodes "
                                     "(names, dtypes, shapes or fields); update callmark or rebuild the model")
        try:
            classes = [categories.by_code(c).code for c in d["classes"]]
        except (KeyError, TypeError, categories.UnknownCategoryError) as exc:
            raise ModelContractError(f"contract classes invalid: {exc}") from None
        outs = d.get("outputs")
        names = [o.get("name") for o in outs] if isinstance(outs, list) else None
        if names is None or set(names) != {"probs", "risk"}:
            raise ModelContractError("contract outputs must be 'probs' and 'risk'")
        extra = {k: v for k, v in d.items() if k not in ("format", "inputs", "outputs", "classes", "class_keys")}
        return cls(inputs=got, outputs=outs, classes=classes, format=d["format"], extra=extra)

    @classmethod
    def load(cls, model_dir) -> "Contract":
        path = Path(model_dir) / "contract.json"
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except FileNotFoundError:
            raise ModelContractError(f"{path} is missing; is {model_dir} a model directory?") from None
        except json.JSONDecodeError as exc:
            raise ModelContractError(f"{path} is not valid JSON: {exc}") from None


class ModelRunner:
    """Loads `model.tflite` + `contract.json` from a model directory and scores ringing calls."""

    def __init__(self, model_dir, num_threads: int = 1):
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        self.model_dir = Path(model_dir)
        self.contract = Contract.load(self.model_dir)
        path = self.model_dir / "model.tflite"
        if not path.is_file():
            raise ModelContractError(f"{path} is missing")
        try:
            # built-in kernels only: no XNNPACK delegate (no thread pool, no "Created delegate" log line;
            # as fast for a 50 KB int8 model at batch size 1)
            self.interpreter = Interpreter(model_path=str(path), num_threads=num_threads,
                                           experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
            self._runner = self.interpreter.get_signature_runner()
        except (ValueError, RuntimeError) as exc:
            raise ModelContractError(f"{path} cannot be loaded by LiteRT: {exc}") from None
        sig = self._runner.get_input_details()
        for spec in self.contract.inputs:
            if spec["name"] not in sig:
                raise ModelContractError(f"model.tflite has no input named {spec['name']!r}")
        self.keys = [categories.by_code(c).key for c in self.contract.classes]
        harmful = [categories.by_code(c).harmful for c in self.contract.classes]
        self._harmful = np.asarray(harmful, dtype=bool)

    def run(self, tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run encoded tensors (batch of one) -> {"probs": [1, C], "risk": [1, 1]} arrays."""
        out = self._runner(**tensors)
        return {"probs": np.asarray(out["probs"], dtype=np.float32),
                "risk": np.asarray(out["risk"], dtype=np.float32)}

    def run_batch(self, tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run many encoded rows one by one (the phone's batch size is 1)."""
        n = len(next(iter(tensors.values())))
        outs = [self.run({k: v[i:i + 1] for k, v in tensors.items()}) for i in range(n)]
        return {k: np.concatenate([o[k] for o in outs]) for k in ("probs", "risk")}

    def score(self, raw_facts: dict) -> dict:
        """Raw facts of a ringing call -> {"risk": float, "probs": {category_key: p}}."""
        out = self.run(encode(raw_facts))
        probs = out["probs"][0]
        return {"risk": float(out["risk"][0][0]),
                "probs": {k: float(p) for k, p in zip(self.keys, probs)}}


def replay_test_vectors(model_dir, atol: float = 0.02) -> dict:
    """Replay `test_vectors.json` through LiteRT; raises ModelContractError on any mismatch."""
    model_dir = Path(model_dir)
    runner = ModelRunner(model_dir)
    try:
        vectors = json.loads((model_dir / "test_vectors.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError) as exc:
        raise ModelContractError(f"test_vectors.json unreadable in {model_dir}: {exc}") from None
    worst = 0.0
    for i, vec in enumerate(vectors.get("vectors", [])):
        got = runner.score(vec["input"])
        want = vec["expected"]
        diffs = [abs(got["risk"] - want["risk"])] + [abs(got["probs"][k] - want["probs"][k]) for k in want["probs"]]
        worst = max(worst, max(diffs))
        if max(diffs) > atol:
            raise ModelContractError(f"test vector {i} ({vec['input'].get('number')!r}) differs by "
                                     f"{max(diffs):.4f} > {atol}")
    n = len(vectors.get("vectors", []))
    if n == 0:
        raise ModelContractError(f"{model_dir}/test_vectors.json holds no vectors")
    return {"vectors": n, "max_diff": worst}


def _main(argv: list[str]) -> int:
    """`python -m callmark.model run MODEL_DIR IN.npz OUT.npz`: run encoded rows through LiteRT."""
    if len(argv) != 4 or argv[0] != "run":
        print("usage: python -m callmark.model run MODEL_DIR IN.npz OUT.npz", file=sys.stderr)
        return 2
    runner = ModelRunner(argv[1])
    data = np.load(argv[2])
    out = runner.run_batch({k: data[k] for k in ("digits", "codes", "facts")})
    np.savez(argv[3], **out)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
