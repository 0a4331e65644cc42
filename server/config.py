"""Server configuration: one typed dataclass, filled from CALLMARK_* environment variables.

Every field can be set from the environment (name in the comment). `Config.from_env()` reads them;
`Config.from_dict()` / `to_dict()` round-trip for tests and for `callmark serve --print-config`.
"""
from __future__ import annotations

import dataclasses
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from server.errors import ConfigError

ENV_PREFIX = "CALLMARK_"


@dataclass
class Config:
    """All knobs of the server. Units are in the comments; env var = CALLMARK_ + upper-case name."""

    data_dir: str = "./var"                 # CALLMARK_DATA_DIR: the SQLite store lives here
    database_url: str = ""                  # CALLMARK_DATABASE_URL: empty = SQLite at
                                            #   <data_dir>/callmark.sqlite; a path = SQLite there;
                                            #   postgresql://user:pass@host:port/db = PostgreSQL
    db_pool_max: int = 8                    # CALLMARK_DB_POOL_MAX: PostgreSQL connections per
                                            #   process (gunicorn worker)
    exports_dir: str = "./exports"          # CALLMARK_EXPORTS_DIR: published artefacts (read only)
    device_secret: str = ""                 # CALLMARK_DEVICE_SECRET: HMAC key for device ids; empty =
                                            #   generated once and kept in <data_dir>/device_secret
    admin_key: str = ""                     # CALLMARK_ADMIN_KEY: bootstrap admin API key (all scopes)
    max_body_bytes: int = 1_048_576         # CALLMARK_MAX_BODY_BYTES: larger request bodies get 413
    max_batch: int = 500                    # CALLMARK_MAX_BATCH: tag events per POST /v1/tags
    daily_cap: int = 50                     # CALLMARK_DAILY_CAP: stored tags per reporter per UTC day;
                                            #   more are acknowledged but flagged over_cap
    tags_limit_device: str = "120/minute"   # CALLMARK_TAGS_LIMIT_DEVICE: POST /v1/tags per token
    tags_limit_ip: str = "1200/minute"      # CALLMARK_TAGS_LIMIT_IP: POST /v1/tags per client IP
    devices_limit_ip: str = "60/hour"       # CALLMARK_DEVICES_LIMIT_IP: registrations per client IP
    appeals_limit_ip: str = "20/hour"       # CALLMARK_APPEALS_LIMIT_IP: appeals per client IP
    default_limit_ip: str = "6000/minute"   # CALLMARK_DEFAULT_LIMIT_IP: every other endpoint per IP
    ratelimit_enabled: bool = True          # CALLMARK_RATELIMIT_ENABLED
    ratelimit_storage_uri: str = "callmark-memory://"  # CALLMARK_RATELIMIT_STORAGE_URI: the
                                            #   default is per process (per gunicorn worker);
                                            #   redis://… shares counters between workers
    trusted_proxies: int = 0                # CALLMARK_TRUSTED_PROXIES: X-Forwarded-For hops to trust
    lookup_k: int = 20                      # CALLMARK_LOOKUP_K: minimum expected labels per bucket
    lookup_min_prefix: int = 1              # CALLMARK_LOOKUP_MIN_PREFIX: hex chars
    lookup_max_prefix: int = 8              # CALLMARK_LOOKUP_MAX_PREFIX: hex chars (upper bound)
    lookup_max_bucket: int = 5000           # CALLMARK_LOOKUP_MAX_BUCKET: answers larger are refused
    sync_min_wait_s: int = 3600             # CALLMARK_SYNC_MIN_WAIT_S: seconds before the next sync;
                                            #   a larger manifest hints.min_poll_seconds wins
    sync_jitter_s: int = 3600               # CALLMARK_SYNC_JITTER_S: add uniform(0, this) seconds
    retry_after_s: int = 30                 # CALLMARK_RETRY_AFTER_S: Retry-After on 503
    device_token_ttl_s: int = 30 * 86400    # CALLMARK_DEVICE_TOKEN_TTL_S: a device token older than
                                            #   this gets 401; the device re-registers (POST
                                            #   /v1/devices) for a new one; 0 = never expires
    manifest_max_age_s: int = 60            # CALLMARK_MANIFEST_MAX_AGE_S: Cache-Control max-age
    max_delta_chain: int = 30               # CALLMARK_MAX_DELTA_CHAIN: more versions behind = full
    sqlite_synchronous: str = "FULL"        # CALLMARK_SQLITE_SYNCHRONOUS: FULL (power-safe) | NORMAL
    busy_timeout_ms: int = 10000            # CALLMARK_BUSY_TIMEOUT_MS: wait for the write lock
    metrics_enabled: bool = True            # CALLMARK_METRICS_ENABLED: serve /metrics
    console_secret: str = ""                # CALLMARK_CONSOLE_SECRET: signs console session cookies;
                                            #   empty = generated once, kept in <data_dir>/console_secret
                                            #   (shared by every worker)
    console_session_minutes: int = 480      # CALLMARK_CONSOLE_SESSION_MINUTES: console login lifetime
    console_login_limit: str = "10/minute"  # CALLMARK_CONSOLE_LOGIN_LIMIT: login attempts per client IP
    console_secure_cookie: bool = False     # CALLMARK_CONSOLE_SECURE_COOKIE: always mark the session
                                            #   cookie Secure (it is anyway on HTTPS requests, also
                                            #   behind a TLS proxy when CALLMARK_TRUSTED_PROXIES >= 1)
    keys_dir: str = ""                      # CALLMARK_KEYS_DIR: signing keys for publish/promote/
                                            #   rollback over HTTP (the CLI's --keys); empty =
                                            #   <data_dir>/keys; never inside exports_dir
    extra: dict = field(default_factory=dict)  # free-form, not read from env

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError naming the bad field and how to fix it."""
        if self.sqlite_synchronous.upper() not in ("FULL", "NORMAL", "EXTRA"):
            raise ConfigError("sqlite_synchronous must be FULL, NORMAL or EXTRA "
                              f"(got {self.sqlite_synchronous!r}); set CALLMARK_SQLITE_SYNCHRONOUS")
        for name in ("max_body_bytes", "max_batch", "daily_cap", "lookup_k", "lookup_min_prefix",
                     "lookup_max_prefix", "lookup_max_bucket", "max_delta_chain", "busy_timeout_ms",
                     "console_session_minutes", "db_pool_max"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1 (got {getattr(self, name)}); "
                                  f"set {ENV_PREFIX}{name.upper()}")
        for name in ("sync_min_wait_s", "sync_jitter_s", "retry_after_s", "manifest_max_age_s",
                     "trusted_proxies", "device_token_ttl_s"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0 (got {getattr(self, name)})")
        if not 1 <= self.lookup_min_prefix <= self.lookup_max_prefix <= 64:
            raise ConfigError("need 1 <= lookup_min_prefix <= lookup_max_prefix <= 64")
        url = self.database_url
        if "://" in url and not url.startswith(("postgresql://", "postgres://")):
            raise ConfigError("database_url must be a SQLite file path or "
                              "postgresql://user:password@host:port/dbname; set "
                              "CALLMARK_DATABASE_URL")
        if self.keys_dir and self.keys_inside_exports():
            raise ConfigError(self.keys_problem())

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    @property
    def exports_path(self) -> Path:
        return Path(self.exports_dir)

    @property
    def keys_path(self) -> Path:
        """The signing keys directory (CALLMARK_KEYS_DIR, default <data_dir>/keys)."""
        return Path(self.keys_dir) if self.keys_dir else self.data_path / "keys"

    def keys_inside_exports(self) -> bool:
        """True when the keys directory lies in (or is) the public exports directory."""
        keys, exports = self.keys_path.resolve(), self.exports_path.resolve()
        return keys == exports or exports in keys.parents

    def keys_problem(self) -> str:
        return (f"keys_dir {self.keys_path} lies inside exports_dir {self.exports_path}: the exports are "
                "public; set CALLMARK_KEYS_DIR to a private directory")

    @property
    def db_path(self) -> Path:
        return self.data_path / "callmark.sqlite"

    @property
    def database(self) -> str:
        """The store to open: CALLMARK_DATABASE_URL when set, else the SQLite file in data_dir."""
        return self.database_url or str(self.db_path)

    def open_store(self):
        """A `server.store.Store` over the configured backend (not migrated, opened lazily)."""
        from server.store import Store
        return Store(self.database, synchronous=self.sqlite_synchronous,
                     busy_timeout_ms=self.busy_timeout_ms, pool_max=self.db_pool_max)

    def secret_bytes(self) -> bytes:
        """The device HMAC key: the configured one, else a random one persisted in data_dir."""
        return self.persisted_secret("device_secret", self.device_secret)

    def console_secret_bytes(self) -> bytes:
        """The console session-signing key: configured, else persisted in data_dir/console_secret."""
        return self.persisted_secret("console_secret", self.console_secret)

    def persisted_secret(self, name: str, configured: str = "") -> bytes:
        """`configured` when set, else a random 256-bit hex key kept in <data_dir>/<name> (mode 0600),
        created once: every worker (and every restart) reads the same key."""
        if configured:
            return configured.encode()
        path = self.data_path / name
        if not path.exists():
            self.data_path.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(secrets.token_hex(32))
            os.chmod(tmp, 0o600)
            try:
                os.link(tmp, path)      # atomic: the first worker wins, others read its key
            except FileExistsError:
                pass
            finally:
                tmp.unlink()
        return path.read_text().strip().encode()

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for hidden in ("device_secret", "admin_key", "console_secret"):
            if d[hidden]:
                d[hidden] = "***"
        d["database_url"] = re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", d["database_url"])
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Config":
        """Build from a mapping; unknown keys raise ConfigError."""
        names = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - set(names))
        if unknown:
            raise ConfigError(f"unknown config keys {unknown}; known: {sorted(names)}")
        return cls(**dict(d))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> "Config":
        """Read CALLMARK_* variables (typed by the dataclass field), then apply overrides."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name == "extra":
                continue
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is None:
                continue
            values[f.name] = _coerce(f.name, f.type, raw)
        unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ConfigError(f"unknown config keys {unknown}")
        values.update(overrides)
        return cls(**values)


def _coerce(name: str, typ: Any, raw: str) -> Any:
    typ = typ if isinstance(typ, str) else getattr(typ, "__name__", str(typ))
    env = ENV_PREFIX + name.upper()
    if typ == "int":
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{env} must be an integer (got {raw!r})") from None
    if typ == "bool":
        low = raw.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off", ""):
            return False
        raise ConfigError(f"{env} must be true/false (got {raw!r})")
    return raw
