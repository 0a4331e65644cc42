"""`callmark diff OLD NEW`: what a release changed (the library is publisher/diff.py)."""
from __future__ import annotations

import json

import click


@click.command("diff")
@click.argument("old")
@click.argument("new")
@click.option("--top", default=10, show_default=True, type=click.IntRange(min=0),
              help="Top changes listed per kind and region.")
@click.option("--min-confidence-change", default=0.05, show_default=True, type=click.FloatRange(0, 1),
              help="Smallest confidence move counted as a change.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of Markdown.")
@click.option("--out", default=None, type=click.Path(dir_okay=False), help="Also write the report here.")
def command(old, new, top, min_confidence_change, as_json, out):
    """Numbers added, removed, relabelled and confidence changes per region and category.

    OLD and NEW are build directories, pack directories, exports directories with an optional
    :channel and @version, or manifest files.

    Example: callmark diff var/demo/builds/v1 var/demo/builds/v2

    Example: callmark diff exports:stable@1 exports:stable --json
    """
    from publisher.diff import DiffError, release_diff
    try:
        d = release_diff(old, new, top=top, min_confidence_change=min_confidence_change)
    except DiffError as exc:
        raise click.ClickException(str(exc)) from None
    text = json.dumps(d.to_dict(), indent=1) if as_json else d.to_markdown()
    if out:
        with open(out, "w", encoding="utf-8") as f:
            f.write(text if text.endswith("\n") else text + "\n")
    click.echo(text)
