"""The publisher: build outputs -> signed release in exports/, and every later change to it.

Public API (library first; the `callmark publish/promote/rollback/rollout/resign/gc/history/keys`
commands and the server's admin endpoints are thin wrappers):

* keys (`publisher.keys`): `KeyStore`, `init_keys`, `rotate_keys`, `make_root`
* releases (`publisher.release`): `publish_release`, `promote`, `set_rollout`, `rollback`,
  `resign`, `collect_garbage`, `sync_keys`, `history`, `load_manifest`, `channel_versions`,
  `channels`

It needs `callmark/` and `cryptography` only: no TensorFlow, never `server/` or `trainer/`.
"""
from publisher.keys import KeyStore, init_keys, make_root, rotate_keys
from publisher.metadata import MANIFEST_EXPIRES_DAYS, ROOT_EXPIRES_DAYS
from publisher.release import (
    DEFAULT_HINTS, channel_versions, channels, collect_garbage, history, load_manifest, promote, publish_release,
    resign, rollback, set_rollout, sync_keys,
)

__all__ = [
    "KeyStore", "init_keys", "make_root", "rotate_keys", "MANIFEST_EXPIRES_DAYS", "ROOT_EXPIRES_DAYS",
    "DEFAULT_HINTS", "channel_versions", "channels", "collect_garbage", "history", "load_manifest", "promote",
    "publish_release", "resign", "rollback", "set_rollout", "sync_keys",
]
