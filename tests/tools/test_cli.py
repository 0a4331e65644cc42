"""The CLI: every command loads lazily and documents itself with an example."""
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from tools.cli import COMMANDS, main


def _walk(cmd, path):
    yield path, cmd
    if isinstance(cmd, click.Group):
        for name in cmd.list_commands(None):
            yield from _walk(cmd.get_command(None, name), path + [name])


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_help_with_an_example(name):
    top = main.get_command(None, name)
    assert top is not None, name
    for path, cmd in _walk(top, [name]):
        result = CliRunner().invoke(main, path + ["--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "example" in result.output.lower(), f"`callmark {' '.join(path)} --help` shows no example"


def test_numbers_command_does_not_import_tensorflow_or_flask():
    code = ("import sys; from click.testing import CliRunner; from tools.cli import main; "
            "r = CliRunner().invoke(main, ['numbers', 'normalize', '95588']); assert r.exit_code == 0; "
            "print(sorted(m for m in ('tensorflow', 'flask', 'trainer') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
