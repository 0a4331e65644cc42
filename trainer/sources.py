"""The build's one source adapter: every input of a build comes in here.

A build reads four things (docs/consensus.md): tag events, verified businesses, accepted appeals and
reissued (recycled) numbers. Each comes from the server's SQLite store (through its Flask-free
module `server.store`: no web stack is loaded), from files (CSV/JSONL, optionally .gz), or from both
(files add to what the store holds). `read_inputs` returns them parsed, with the bad-row report of
the tags; the trainer never touches `server/` anywhere else.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from callmark.errors import CallmarkError
from trainer import ingest


class SourceError(CallmarkError):
    """An input of the build is missing or unusable (the message says which and how to fix it)."""


@dataclass
class Sources:
    """Where a build's inputs come from. ``tags`` None: the store under ``data_dir``."""

    tags: str | None = None  # tag events file (CSV/JSONL/SQLite); None: the server store
    data_dir: str = "var"  # the server store (tags, accepted appeals, verified businesses)
    verified: str | None = None  # verified businesses file (number,company), added to the store's
    appeals: str | None = None  # accepted appeals file (number,categories,filed_ts[,accepted])
    recycled: str | None = None  # reissued numbers file (number,reissued_ts)
    region: str = "CN"


@dataclass
class BuildInputs:
    """Everything a build reads: events plus the side tables keyed by number key."""

    events: ingest.TagEvents
    verified: dict = field(default_factory=dict)  # number key -> company name
    appeals: dict = field(default_factory=dict)  # number key -> [ingest.Appeal]
    recycled: dict = field(default_factory=dict)  # number key -> reissue epoch seconds
    report: dict = field(default_factory=dict)  # bad-row report of the tag events

    @property
    def side(self) -> dict:
        """The side tables as the pipeline stages take them."""
        return {"verified": self.verified, "appeals": self.appeals, "recycled": self.recycled}


def store_exists(data_dir: str | Path) -> bool:
    """True when ``data_dir`` holds a server store."""
    from server import store
    return (Path(data_dir) / store.DB_NAME).is_file()


def _from_store(src: Sources):
    from server import store  # the Flask-free store module (tests/test_layering.py checks it)
    if not store_exists(src.data_dir):
        raise SourceError(f"no store at {src.data_dir}; upload tags to a server or pass --tags FILE")
    events, report = ingest.read_tags(store.iter_tag_events(src.data_dir), region=src.region)
    verified, _ = ingest.read_verified(store.iter_verified(src.data_dir), src.region)
    appeals, _ = ingest.read_appeals(store.iter_accepted_appeals(src.data_dir), src.region)
    return events, report, verified, appeals


def read_inputs(src: Sources) -> BuildInputs:
    """Read and parse every input named by ``src``.

    Raises SourceError when the store is missing or no usable tag event remains, and
    ingest.IngestError for an unreadable file."""
    if src.tags:
        events, report = ingest.read_tags(src.tags, region=src.region)
        verified, appeals = {}, {}
    else:
        events, report, verified, appeals = _from_store(src)
    if src.verified:
        verified.update(ingest.read_verified(src.verified, src.region)[0])
    if src.appeals:
        for k, lst in ingest.read_appeals(src.appeals, src.region)[0].items():
            appeals.setdefault(k, []).extend(lst)
    recycled = ingest.read_recycled(src.recycled, src.region)[0] if src.recycled else {}
    if len(events) == 0:
        raise SourceError("no usable tag events: " + report.summary())
    return BuildInputs(events, verified, appeals, recycled, report.to_dict())
