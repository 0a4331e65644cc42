"""Which caller numbers are held out of model training: the one rule every build shares.

A caller is held out when a hash of its canonical number key (`callmark.numbers.key_of`) falls in
the first `HOLDOUT_SHARE` of the hash space. The rule depends on nothing but the number, so every
build (today's candidate and last week's published model) holds out the same callers, and the
release gate can score both models on calls that neither was trained on.
"""
from __future__ import annotations

import hashlib
from functools import lru_cache

HOLDOUT_SHARE = 0.2  # share of caller numbers never trained on (evaluation and the release gate)
_SPACE = 10_000


@lru_cache(maxsize=1 << 20)
def _bucket(number: str, salt: str, region: str) -> int:
    from callmark.numbers import key_of

    key = key_of(number, region)
    ident = str(key) if key is not None else "raw:" + number.strip()
    digest = hashlib.blake2b((salt + ident).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % _SPACE


def held_out(number: str, share: float = HOLDOUT_SHARE, salt: str = "", region: str = "CN") -> bool:
    """True when caller `number` (any form `key_of` reads; unparseable strings hash as themselves)
    is held out. `salt` draws an independent split (e.g. validation callers inside the training
    callers); the default salt is the evaluation hold-out every build agrees on."""
    return _bucket(number, salt, region) < share * _SPACE
