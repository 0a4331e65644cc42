"""Consensus output: the result object, range labels and the LABELS.csv / ranges files.

Formats are pinned in docs/interfaces.md ("Labels").
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from callmark.categories import by_code
from callmark.labels import FLAG_APPEAL_SUPPRESSED, FLAG_VERIFIED, ranges_path, write_labels, write_ranges
from callmark.numbers import format_key, is_short_key



@dataclass
class RangeLabels:
    """Blocks of 10 / 100 numbers labelled as a whole (columns of equal length)."""

    start: np.ndarray  # int64 key of the first number of the block
    size: np.ndarray  # int64 10 or 100
    category: np.ndarray  # int16 category code
    confidence: np.ndarray  # float64 mean confidence of the labelled numbers in it
    numbers: np.ndarray  # int64 published harmful numbers in the block
    last_ts: np.ndarray  # int64 epoch seconds

    def __len__(self) -> int:
        return int(self.start.shape[0])

    def covers(self, key: int) -> bool:
        """True when a range block contains `key`."""
        return bool(np.any((self.start <= key) & (key < self.start + self.size)))


@dataclass
class ConsensusResult:
    """One row per tagged number (columns as numpy arrays), plus ranges and run statistics."""

    key: np.ndarray  # int64 number keys, sorted
    category: np.ndarray  # int16 best category code (legit when no evidence remains)
    confidence: np.ndarray  # float64 calibrated probability of that category
    reporters: np.ndarray  # int64 distinct reporters whose current vote is that category
    published: np.ndarray  # bool
    flags: np.ndarray  # int64 bitmask: 1 verified, 2 range, 4 model, 8 appeal-suppressed
    last_ts: np.ndarray  # int64 epoch seconds of the last evidence (0 when none)
    company: list[str]
    ranges: RangeLabels | None
    as_of: int  # epoch seconds
    config: object
    stats: dict = field(default_factory=dict)
    reporter_accuracy: np.ndarray | None = None  # learned accuracy per reporter index (EM only)
    reporter_ids: list[str] | None = None

    def __len__(self) -> int:
        return int(self.key.shape[0])

    def rows(self) -> Iterator[dict]:
        """LABELS.csv rows as dicts."""
        cat_keys = {int(c): by_code(int(c)).key for c in np.unique(self.category)}
        for i in range(len(self)):
            yield {"number": format_key(int(self.key[i])),
                   "category": cat_keys[int(self.category[i])],
                   "confidence": f"{self.confidence[i]:.4f}",
                   "reporters": int(self.reporters[i]), "published": int(self.published[i]),
                   "key": int(self.key[i]), "flags": int(self.flags[i]),
                   "last_ts": int(self.last_ts[i]), "company": self.company[i]}

    def lookup(self, key: int) -> dict | None:
        """The row of one number key, or None."""
        i = int(np.searchsorted(self.key, key))
        if i < len(self) and self.key[i] == key:
            return next(iter(_slice(self, i)))
        return None

    def write_csv(self, path) -> tuple[Path, Path]:
        """Write LABELS.csv and `<stem>.ranges.csv` (atomically); returns both paths."""
        return write_labels(path, self.rows()), write_ranges(ranges_path(path), self._range_rows())

    def _range_rows(self) -> Iterator[tuple]:
        r = self.ranges
        if r is None:
            return
        for i in range(len(r)):
            yield (format_key(int(r.start[i])), int(r.size[i]), by_code(int(r.category[i])).key,
                   f"{r.confidence[i]:.4f}", int(r.numbers[i]), int(r.last_ts[i]))

    def summary(self) -> str:
        s = self.stats
        return (f"{s.get('numbers', len(self))} numbers, {s.get('published', 0)} published, "
                f"{0 if self.ranges is None else len(self.ranges)} ranges; {s.get('events', 0)} "
                f"events -> {s.get('votes', 0)} votes; blocs {s.get('blocs', 0)}")


def _slice(res: ConsensusResult, i: int) -> Iterator[dict]:
    one = ConsensusResult(res.key[i:i + 1], res.category[i:i + 1], res.confidence[i:i + 1],
                          res.reporters[i:i + 1], res.published[i:i + 1], res.flags[i:i + 1],
                          res.last_ts[i:i + 1], res.company[i:i + 1], None, res.as_of, res.config)
    return one.rows()


def build_ranges(keys: np.ndarray, col: dict, cfg, harmful: np.ndarray,
                 verified: set[int]) -> RangeLabels:
    """PhoneBlock-style ranges over published harmful numbers: a block of 10 with >= range10_min of
    them, a block of 100 with >= range100_min spread over >= range100_min_blocks blocks of 10. A block
    never covers a verified or appeal-suppressed number; a 100-block replaces its 10-blocks."""
    empty = RangeLabels(*(np.zeros(0, d) for d in (np.int64, np.int64, np.int16, np.float64,
                                                    np.int64, np.int64)))
    short = np.fromiter((is_short_key(int(k)) for k in keys), bool, keys.shape[0]) \
        if keys.size and keys.max() >= 10**16 else np.zeros(keys.shape[0], bool)
    good = col["published"] & harmful & ~short & ((col["flags"] & FLAG_VERIFIED) == 0)
    if not good.any():
        return empty
    forbidden = set(verified)
    forbidden.update(int(k) for k in keys[(col["flags"] & FLAG_APPEAL_SUPPRESSED) > 0])
    bad10 = {k // 10 for k in forbidden}
    bad100 = {k // 100 for k in forbidden}
    k = keys[good]
    cat, conf, last = col["category"][good], col["confidence"][good], col["last_ts"][good]
    out = []
    b100, inv100, n100 = np.unique(k // 100, return_inverse=True, return_counts=True)
    taken100 = set()
    for j in np.flatnonzero(n100 >= cfg.range100_min):
        members = inv100.ravel() == j
        if int(b100[j]) in bad100 or np.unique(k[members] // 10).size < cfg.range100_min_blocks:
            continue
        taken100.add(int(b100[j]))
        out.append(_range(int(b100[j]) * 100, 100, cat[members], conf[members], last[members]))
    b10, inv10, n10 = np.unique(k // 10, return_inverse=True, return_counts=True)
    for j in np.flatnonzero(n10 >= cfg.range10_min):
        blk = int(b10[j])
        if blk in bad10 or blk // 10 in taken100:
            continue
        members = inv10.ravel() == j
        out.append(_range(blk * 10, 10, cat[members], conf[members], last[members]))
    if not out:
        return empty
    cols = list(zip(*sorted(out)))
    return RangeLabels(np.array(cols[0], np.int64), np.array(cols[1], np.int64),
                       np.array(cols[2], np.int16), np.array(cols[3], np.float64),
                       np.array(cols[4], np.int64), np.array(cols[5], np.int64))


def _range(start: int, size: int, cat, conf, last) -> tuple:
    codes, counts = np.unique(cat, return_counts=True)
    return (start, size, int(codes[counts.argmax()]), float(conf.mean()), int(cat.size),
            int(last.max()))
