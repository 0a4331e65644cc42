"""The label contract: flag bits, LABELS.csv and ranges columns, and the one reader and writer.

LABELS.csv (docs/interfaces.md, "Labels") is what consensus writes and what the packs, the server's
lookup table, the teacher targets and the evaluation read. Every side reads it through
`read_labels` and writes it through `write_labels`, so there is one rule for "published":

* true:  ``1``, ``true``, ``yes``, ``y``, ``t`` (any case, surrounding spaces ignored)
* false: ``0``, ``false``, ``no``, ``n``, ``f`` or empty
* anything else is a `LabelsFormatError` naming the file and line.

Flag bits (the ``flags`` column, and the packs' ``flags`` field, docs/pack-format.md):

==  =========================  ==========================================================
 1  ``FLAG_VERIFIED``          verified business (``company`` holds its name)
 2  ``FLAG_RANGE``             derived from a number-block (range) label
 4  ``FLAG_MODEL``             model-derived (teacher score, few tags)
 8  ``FLAG_APPEAL_SUPPRESSED`` an accepted appeal suppresses harmful warnings for the number
==  =========================  ==========================================================

Bit 8 was spelled SUPPRESSED in the handset rules and APPEAL in the trainer; both meant "an
accepted appeal suppresses it" (docs/adr/0005-shared-contract-rooms.md), hence the one name.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import IO, Iterable, Iterator, Mapping

from callmark.errors import CallmarkError
from callmark.files import atomic_writer

FLAG_VERIFIED = 1
FLAG_RANGE = 2
FLAG_MODEL = 4
FLAG_APPEAL_SUPPRESSED = 8
FLAG_NAMES = {FLAG_VERIFIED: "verified", FLAG_RANGE: "range", FLAG_MODEL: "model",
              FLAG_APPEAL_SUPPRESSED: "appeal_suppressed"}

REQUIRED_COLUMNS = ("number", "category", "confidence", "reporters", "published")
LABEL_COLUMNS = REQUIRED_COLUMNS + ("key", "flags", "last_ts", "company")
RANGE_COLUMNS = ("start", "size", "category", "confidence", "numbers", "last_ts")

# The one yes/no vocabulary of our CSV files (LABELS.csv `published`, call records' `answered`).
TRUE_WORDS = frozenset({"1", "true", "yes", "y", "t"})
FALSE_WORDS = frozenset({"0", "false", "no", "n", "f", ""})
PUBLISHED_TRUE, PUBLISHED_FALSE = TRUE_WORDS, FALSE_WORDS


class LabelsFormatError(CallmarkError, ValueError):
    """A LABELS.csv (or its ranges file) that does not follow docs/interfaces.md ("Labels")."""


class LabelRow(dict):
    """One LABELS.csv row: every column as text except ``published`` (bool); ``line`` is its line
    number in the file (the header is line 1) and ``where`` "<file> line <n>" for error messages."""

    line: int = 0
    where: str = ""


def parse_published(value, where: str = "published") -> bool:
    """The one "published" rule (module docstring); LabelsFormatError on any other value."""
    if isinstance(value, bool):
        return value
    text = "" if value is None else str(value).strip().lower()
    if text in PUBLISHED_TRUE:
        return True
    if text in PUBLISHED_FALSE:
        return False
    raise LabelsFormatError(f"{where}: published must be 1/0 (or true/false, yes/no), got {value!r}")


def ranges_path(labels_path: str | os.PathLike) -> Path:
    """``<stem>.ranges.csv`` next to a LABELS.csv (``labels.csv`` -> ``labels.ranges.csv``)."""
    p = Path(labels_path)
    return p.with_name((p.name[:-4] if p.name.endswith(".csv") else p.name) + ".ranges.csv")


def _open(source, name: str | None):
    if isinstance(source, (str, os.PathLike)):
        if not os.path.isfile(source):
            raise LabelsFormatError(f"no labels file at {source}; pass the consensus LABELS.csv")
        return open(source, newline="", encoding="utf-8"), str(source)
    return None, name or getattr(source, "name", "LABELS.csv")


def read_labels(source: str | os.PathLike | IO[str], *, published_only: bool = False,
                name: str | None = None) -> Iterator[LabelRow]:
    """Stream LABELS.csv rows as `LabelRow` (``published`` parsed by `parse_published`).

    ``source`` is a path or an open text stream (then ``name`` names it in errors). With
    ``published_only`` the unpublished rows are skipped. Raises LabelsFormatError when the file is
    missing, lacks one of `REQUIRED_COLUMNS`, a row has a bad ``published`` value, the CSV is
    unreadable (a field over 128 KiB, a NUL byte) or not UTF-8."""
    fh, where = _open(source, name)
    line = 1
    try:
        reader = csv.DictReader(fh if fh is not None else source)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or ())]
        if missing:
            raise LabelsFormatError(f"{where}: missing columns {missing}; the header must start with "
                                    f"{','.join(REQUIRED_COLUMNS)}[,{','.join(LABEL_COLUMNS[5:])}]")
        for line, raw in enumerate(reader, start=2):
            row = LabelRow(raw)
            row.line, row.where = line, f"{where} line {line}"
            row["published"] = parse_published(raw.get("published"), f"{row.where}")
            if published_only and not row["published"]:
                continue
            yield row
    except csv.Error as e:   # a field over csv.field_size_limit() (128 KiB), a NUL byte, a bad quote
        raise LabelsFormatError(f"{where} line {line + 1}: not readable CSV ({e})") from None
    except UnicodeDecodeError as e:
        raise LabelsFormatError(f"{where} near line {line + 1}: not UTF-8 ({e.reason} at byte "
                                f"{e.start} of a read block); save the file as UTF-8") from None
    finally:
        if fh is not None:
            fh.close()


def label_columns(source: str | os.PathLike) -> list[str]:
    """The header of a LABELS.csv (to write it back with the same columns)."""
    with open(source, newline="", encoding="utf-8") as f:
        return next(csv.reader(f), [])


def _cell(column: str, value):
    if column == "published":
        return 1 if parse_published(value) else 0
    return "" if value is None else value


def write_labels(path: str | os.PathLike, rows: Iterable[Mapping | tuple],
                 columns: Iterable[str] = LABEL_COLUMNS) -> Path:
    """Write LABELS.csv atomically: ``rows`` are mappings (extra keys ignored, missing ones empty)
    or tuples in ``columns`` order; ``published`` is written as 1/0. Returns the path."""
    columns = list(columns)
    with atomic_writer(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(columns)
        for r in rows:
            if isinstance(r, Mapping):
                w.writerow([_cell(c, r.get(c)) for c in columns])
            else:
                w.writerow([_cell(c, v) for c, v in zip(columns, r)])
    return Path(path)


def read_ranges(path: str | os.PathLike) -> Iterator[LabelRow]:
    """Rows of a ranges file (`RANGE_COLUMNS`, text); nothing when the file does not exist."""
    if not os.path.isfile(path):
        return
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in RANGE_COLUMNS if c not in (reader.fieldnames or ())]
        if missing:
            raise LabelsFormatError(f"{path}: missing columns {missing}; expected {','.join(RANGE_COLUMNS)}")
        for line, raw in enumerate(reader, start=2):
            row = LabelRow(raw)
            row.line, row.where = line, f"{path} line {line}"
            yield row


def write_ranges(path: str | os.PathLike, rows: Iterable[tuple]) -> Path:
    """Write a ranges file atomically (tuples in `RANGE_COLUMNS` order)."""
    with atomic_writer(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(RANGE_COLUMNS)
        w.writerows(rows)
    return Path(path)
