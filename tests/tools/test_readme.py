"""The README agrees with the commands: its CLI table is generated from the click tree, every
command has a runnable example, its tables are whole, and it describes the demo as it prints."""
import re
from pathlib import Path

import click

from tools import readme_cli

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text(encoding="utf-8")


def test_cli_table_matches_the_click_commands():
    assert readme_cli.render(README) == README, "README.md's CLI table is stale: run `python -m tools.readme_cli`"
    table = README.split(readme_cli.START)[1].split(readme_cli.END)[0]
    for path, _ in readme_cli.walk():
        assert f"| `{path}" in table, path


def test_every_command_has_an_example_of_itself():
    for path, cmd in readme_cli.walk():
        ex = readme_cli.examples(cmd)
        assert ex, f"{path} --help has no Example"
        if not isinstance(cmd, click.Group):
            # the example runs this command (group options may stand between the words)
            words = path.split()[1:]
            assert all(w in ex[0].split() for w in words), (path, ex[0])


def test_examples_parse_continuation_lines():
    cmd = click.Command("x", help="Do it. Examples:\n\n  callmark a --b 1\n  --c 2\n\n  callmark d\n\nMore text.\n  callmark no")
    assert readme_cli.examples(cmd) == ["callmark a --b 1 --c 2", "callmark d"]
    kept = click.Command("x", help="Examples:\n\n\b\n  callmark a --long\n\n\b\n  callmark b\n")  # no rewrap
    assert readme_cli.examples(kept) == ["callmark a --long", "callmark b"]


def test_tables_have_no_blank_line_inside():
    lines = README.splitlines()
    for i in range(1, len(lines) - 1):
        if lines[i] == "" and lines[i - 1].startswith("|") and lines[i + 1].startswith("|"):
            raise AssertionError(f"README.md line {i + 1}: a blank line splits a table")
    section = README.split("## Server configuration")[1].split("\n## ")[0]
    assert len(re.findall(r"^\| variable \|", section, re.M)) == 1


def test_demo_days_are_named_as_the_demo_prints_them():
    demo_src = (REPO / "tools" / "demo.py").read_text(encoding="utf-8")
    assert 'f"== day {n}:' in demo_src and 'f"day {n}:' in demo_src
    assert "**day 1**" in README and "**day 2**" in README
    assert not re.search(r"\bdays? (8|9)\b(?! --)", README.replace("--days 9", "")), "the demo prints day 1 / day 2"
