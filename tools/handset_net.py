"""The handset's transport: the sync server over HTTP (or an exports/ mirror directory), with
retries, exponential backoff with jitter, server wait hints and resumable Range downloads.

`Transport` is a `callmark.updater.Fetcher` (``get(path, max_bytes)`` / ``iter(path)``) for the Updater:
paths are the exports/ layout (`root/2.root.json`, `channels/stable/manifest.json`,
`artefacts/<sha16>-<name>`), mapped to the server's `/v1/...` endpoints.
"""
from __future__ import annotations

import email.utils
import json
import random
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from callmark import safejson
from callmark.exports import manifest_channel
from callmark.files import commit_file
from callmark.manifest import ArtefactEntry
from callmark.updater import CHUNK, Fetcher, read_bounded, verify_file
from callmark.manifest_errors import EndlessDataError, TamperedArtefactError
from tools.handset_store import HandsetError

TRANSIENT_STATUS = (408, 425, 429, 500, 502, 503, 504)
MAX_ANSWER_BYTES = 1024 * 1024  # a JSON API answer (tag ack, update advice, registration), at most


class ServerUnavailable(HandsetError):
    """The server could not be reached or kept failing after retries (try again later)."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class BodyNotEncodable(HandsetError):
    """A request body holds values JSON cannot carry (NaN, infinity, lone surrogates)."""


class ServerRejected(HandsetError):
    """The server refused a request for a reason retrying will not fix (4xx)."""

    def __init__(self, message: str, status: int, body: Any = None):
        super().__init__(message)
        self.status, self.body = status, body


@dataclass
class Backoff:
    """Exponential backoff with full jitter: delay = uniform(0.5, 1) * min(cap, base * 2**n)."""

    base_s: float = 2.0  # seconds before the first retry
    cap_s: float = 6 * 3600.0  # seconds: never wait longer (a phone keeps trying every few hours)
    retries: int = 3  # attempts after the first within one operation
    max_sleep_s: float = 30.0  # seconds slept inside one call; longer waits go to the next sync

    def delay(self, failures: int, rng: random.Random) -> float:
        """Seconds to wait after `failures` consecutive failures (>= 1)."""
        raw = min(self.cap_s, self.base_s * (2 ** max(0, failures - 1)))
        return raw * rng.uniform(0.5, 1.0)

    @classmethod
    def from_dict(cls, d: dict) -> "Backoff":
        return cls(**{k: type(getattr(cls, k))(v) for k, v in d.items() if k in cls.__dataclass_fields__})

    def to_dict(self) -> dict:
        return asdict(self)


def _retry_after(headers: Any) -> float | None:
    v = (headers or {}).get("Retry-After")
    if not v:
        return None
    try:
        return max(0.0, float(v))
    except ValueError:
        t = email.utils.parsedate_to_datetime(v)
        return max(0.0, t.timestamp() - time.time()) if t else None


def _connection_reason(exc: Exception) -> str:
    """The operating system's words from a requests ConnectionError ("Connection refused",
    "Name or service not known"), not urllib3's nested repr."""
    m = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", str(exc))
    return m.group(1).strip() if m else type(exc).__name__


def _hint(headers: Any, name: str) -> int | None:
    try:
        return int((headers or {}).get(name))
    except (TypeError, ValueError):
        return None


class Transport(Fetcher):
    """HTTP(S) to a callmark server, or plain files of an exports/ mirror directory."""

    def __init__(self, url: str, timeout: float = 10.0, backoff: Backoff | None = None,
                 sleep: Callable[[float], None] = time.sleep, rng: random.Random | None = None,
                 session: Any = None):
        if not url:
            raise HandsetError("no server URL: pass --server http://HOST:PORT (or an exports/ directory)")
        self.url = url.rstrip("/")
        self.local: Path | None = None
        if url.startswith("file://"):
            self.local = Path(url[len("file://"):])
        elif "://" not in url:
            self.local = Path(url)
        elif url.split("://", 1)[0].lower() not in ("http", "https"):
            raise HandsetError(f"{url}: a server is an http(s):// URL, a file:// URL or an exports/ directory "
                               f"(e.g. --server http://127.0.0.1:8080 or --server exports)")
        if self.local is not None and not self.local.is_dir():
            raise HandsetError(f"{url} is neither an http(s):// URL nor an exports/ directory")
        self.timeout = timeout  # seconds per request
        self.backoff = backoff or Backoff()
        self.sleep, self.rng = sleep, rng or random.Random()
        self._session = session
        self.hints: dict = {}  # last seen server hints: min_wait_s, jitter_s
        self.manifest_cache: dict[str, tuple[str, bytes]] = {}  # channel -> (etag, raw)
        self.bytes_in = 0  # bytes received (artefacts + metadata)
        self.requests = 0

    @property
    def is_http(self) -> bool:
        return self.local is None

    @property
    def session(self):
        if self._session is None:
            import requests
            self._session = requests.Session()
            self._session.headers["User-Agent"] = "callmark-handset/1"
        return self._session

    # ------------------------------------------------------------ request with retries
    def request(self, method: str, url_path: str, **kw) -> Any:
        """One HTTP request with retries on connection errors, timeouts, 429 and 5xx."""
        import requests
        failures, last = 0, ""
        while True:
            self.requests += 1
            retry_after = None
            try:
                r = self.session.request(method, self.url + url_path, timeout=self.timeout, **kw)
            except requests.Timeout:
                last = f"no answer within {self.timeout:g} s"
            except requests.ConnectionError as e:
                last = f"cannot connect ({_connection_reason(e)})"
            except requests.RequestException as e:  # bad URL and the like: retrying will not help
                raise HandsetError(f"cannot request {self.url + url_path}: {e}") from None
            else:
                self._note_hints(r.headers)
                if r.status_code not in TRANSIENT_STATUS:
                    return r
                retry_after = _retry_after(r.headers)
                last = f"HTTP {r.status_code} from {url_path}"
                r.close()
            failures += 1
            if failures > self.backoff.retries:
                raise ServerUnavailable(f"{self.url}: {last} (after {failures} attempts)", retry_after)
            wait = max(self.backoff.delay(failures, self.rng), retry_after or 0.0)
            if wait > self.backoff.max_sleep_s:
                raise ServerUnavailable(f"{self.url}: {last}; asked to wait {wait:.0f} s", wait)
            self.sleep(wait)

    def _note_hints(self, headers: Any) -> None:
        w, j = _hint(headers, "X-Callmark-Min-Wait"), _hint(headers, "X-Callmark-Jitter")
        if w is not None:
            self.hints["min_wait_s"] = w
        if j is not None:
            self.hints["jitter_s"] = j

    def note_body_hints(self, body: Any) -> None:
        """Take min_wait_s / jitter_s from a JSON answer (update, tag ack)."""
        if isinstance(body, dict):
            for k in ("min_wait_s", "jitter_s"):
                if isinstance(body.get(k), int):
                    self.hints[k] = body[k]

    def _url_path(self, path: str) -> str:
        channel = manifest_channel(path)
        if channel is not None:
            return f"/v1/manifest?channel={channel}"
        return "/v1/" + path.lstrip("/")

    # ------------------------------------------------------------ fetcher protocol (Updater)
    def read(self, path: str, limit: int) -> bytes | None:
        """At most `limit` bytes of a metadata file, or None if absent (`get` checks the limit)."""
        if self.local is not None:
            p = self.local / path
            if not p.is_file():
                return None
            with open(p, "rb") as f:
                data = f.read(limit)
        else:
            headers, channel = {}, manifest_channel(path)
            if channel is not None:
                if channel in self.manifest_cache:
                    headers["If-None-Match"] = f'"{self.manifest_cache[channel][0]}"'
            r = self.request("GET", self._url_path(path), stream=True, headers=headers)
            with r:
                if r.status_code == 304 and channel in self.manifest_cache:
                    return self.manifest_cache[channel][1]
                if r.status_code == 404:
                    return None
                if r.status_code >= 400:
                    raise ServerRejected(f"GET {path}: HTTP {r.status_code}", r.status_code)
                data = read_bounded(r.iter_content(CHUNK), limit)
                etag = (r.headers.get("ETag") or "").strip('W/"')
                if channel and etag and len(data) < limit:
                    self.manifest_cache[channel] = (etag, data)
        self.bytes_in += len(data)
        return data

    def iter(self, path: str) -> Iterator[bytes]:
        """The file's bytes in chunks (no resume; see download())."""
        if self.local is not None:
            with open(self.local / path, "rb") as f:
                yield from iter(lambda: f.read(CHUNK), b"")
            return
        with self.request("GET", self._url_path(path), stream=True) as r:
            if r.status_code >= 400:
                raise ServerRejected(f"GET {path}: HTTP {r.status_code}", r.status_code)
            yield from r.iter_content(CHUNK)

    # ------------------------------------------------------------ resumable download
    def download(self, entry: ArtefactEntry, dest: Path, part_dir: Path) -> tuple[Path, int]:
        """Fetch a listed artefact into `dest`, resuming `<part_dir>/<name>.part` with a Range request.

        Never reads past the listed length; checks length and SHA-256 before moving the file into
        place. A corrupt result is deleted (so the next attempt starts clean) and raises
        TamperedArtefactError. Returns (dest, bytes transferred now).
        """
        part = part_dir / (Path(entry.path).name + ".part")
        have = part.stat().st_size if part.is_file() else 0
        if have > entry.length:
            part.unlink()
            have = 0
        got = 0
        if have < entry.length:
            try:
                got = self._fetch_range(entry, part, have)
            except EndlessDataError:
                part.unlink(missing_ok=True)
                raise
        try:
            verify_file(entry, part)
        except TamperedArtefactError:
            part.unlink(missing_ok=True)
            raise
        commit_file(part, dest)
        return dest, got

    def _fetch_range(self, entry: ArtefactEntry, part: Path, have: int) -> int:
        if self.local is not None:
            src = self.local / entry.path
            if not src.is_file():
                raise ServerRejected(f"{entry.path}: not in the mirror", 404)
            with open(src, "rb") as fi, open(part, "ab") as fo:
                fi.seek(have)
                n = self._copy(iter(lambda: fi.read(CHUNK), b""), fo, entry, have)
            return n
        headers = {"Range": f"bytes={have}-"} if have else {}
        r = self.request("GET", self._url_path(entry.path), stream=True, headers=headers)
        with r:
            if r.status_code == 416:  # we hold at least the whole file: verify decides
                return 0
            if r.status_code >= 400:
                raise ServerRejected(f"GET {entry.path}: HTTP {r.status_code}", r.status_code)
            mode = "ab"
            if have and r.status_code != 206:  # the server ignored Range: start over
                have, mode = 0, "wb"
            with open(part, mode) as fo:
                return self._copy(r.iter_content(CHUNK), fo, entry, have)

    def _copy(self, chunks: Iterator[bytes], fo, entry: ArtefactEntry, have: int) -> int:
        n = 0
        for chunk in chunks:
            if have + n + len(chunk) > entry.length:
                fo.write(chunk[: entry.length - have - n])
                n = entry.length - have
                fo.flush()
                raise EndlessDataError(f"{entry.path}: source sent more than the {entry.length} bytes listed")
            fo.write(chunk)
            n += len(chunk)
        self.bytes_in += n
        return n

    # ------------------------------------------------------------ JSON API
    def post_json(self, url_path: str, body: dict, token: str | None = None) -> tuple[int, Any]:
        """POST JSON with retries; returns (status, parsed body). Raises ServerUnavailable."""
        if self.local is not None:
            raise ServerUnavailable(f"{self.local} is a mirror directory: it cannot take {url_path}")
        try:
            data = json.dumps(body, allow_nan=False, ensure_ascii=False).encode("utf-8")
        except (ValueError, TypeError, UnicodeEncodeError) as e:
            raise BodyNotEncodable(f"POST {url_path}: the request cannot be sent as JSON "
                                   f"({type(e).__name__}: {str(e)[:120]})") from None
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        r = self.request("POST", url_path, data=data, headers=headers, stream=True)
        with r:
            raw = read_bounded(r.iter_content(CHUNK), MAX_ANSWER_BYTES + 1)
        self.bytes_in += len(raw)
        if len(raw) > MAX_ANSWER_BYTES:
            raise ServerRejected(f"POST {url_path}: answer longer than the {MAX_ANSWER_BYTES} bytes "
                                 f"allowed (HTTP {r.status_code}); not trusted", r.status_code)
        try:
            data = safejson.loads(raw, f"answer to POST {url_path}", max_bytes=MAX_ANSWER_BYTES)
        except safejson.JSONInputError as e:
            if r.status_code < 300:
                raise ServerRejected(f"{e} (HTTP {r.status_code})", r.status_code) from None
            data = {"message": raw[:300].decode("utf-8", "replace")}
        self.note_body_hints(data)
        return r.status_code, data
