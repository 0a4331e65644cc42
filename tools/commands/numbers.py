"""`callmark numbers …`: the number normaliser from the command line."""
from __future__ import annotations

import json

import click

from callmark.numbers import normalize


@click.group("numbers")
def command():
    """Number keys and facts.

    Example: callmark numbers normalize 13812345678 95588 --json
    """


@command.command("normalize")
@click.argument("raw", nargs=-1, required=True)
@click.option("--region", default="CN", show_default=True,
              help="ISO country the phone is in (how national numbers are read).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per input line.")
def normalize_command(raw, region, as_json):
    """Normalise caller strings RAW to canonical keys and facts.

    Example: callmark numbers normalize "+86 138-1234-5678" 0086-10-12345678 "400 810 8888" --json
    """
    for text in raw:
        facts = normalize(text, region).to_dict()
        if as_json:
            click.echo(json.dumps(facts, ensure_ascii=False))
        else:
            status = "valid" if facts["valid"] else f"irregular ({facts['irregular']})"
            known = "  ".join(f"{name} {facts[name]}" for name in ("e164", "key", "type", "carrier", "province")
                              if facts.get(name) not in (None, ""))
            click.echo(f"{text}  ->  {known}  {status}")
