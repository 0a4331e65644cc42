"""The one ``FIELD=COLUMN`` mapping syntax of the import and call-record commands.

``--map number=caller,category=kind`` and ``--calls-map caller=other_party,start=begin_time`` both
name a column of the user's file for each of our fields. Items may be one string or several (a click
option given more than once); parts are split on commas, field names are case-insensitive, column
names are kept as written.
"""
from __future__ import annotations

from collections.abc import Iterable


def parse_column_map(items: str | Iterable[str] | None, fields: Iterable[str], *, error: type[Exception],
                     option: str, example: str) -> dict[str, str]:
    """``"a=x,b=y"`` (or an iterable of such strings) -> ``{"a": "x", "b": "y"}``.

    Raises ``error`` naming the bad part, the ``option`` it came from and a working ``example``, for a
    part without ``=`` or a column, and for a field not in ``fields``.
    """
    known = tuple(fields)
    out: dict[str, str] = {}
    for item in ([items] if isinstance(items, str) else items or ()):
        for part in str(item).split(","):
            if not part.strip():
                continue
            field, sep, column = part.partition("=")
            field, column = field.strip().lower(), column.strip()
            if not sep or not column:
                raise error(f"{option} {part!r}: write FIELD=COLUMN, e.g. {example}")
            if field not in known:
                raise error(f"{option} {part!r}: unknown field {field!r}; fields are {', '.join(known)}")
            out[field] = column
    return out
