"""The `callmark` command line: a thin, lazily loaded click layer over the library.

Each command lives in its own module and is imported only when it runs, so `callmark numbers …`
never pays for TensorFlow or Flask.
"""
from __future__ import annotations

import importlib

import click

# name -> (module, attribute, one-line help shown by `callmark --help`)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "numbers": ("tools.commands.numbers", "command", "Normalise caller strings to number keys and facts."),
    "import": ("tools.commands.importer", "command", "Import a report stream (FTC, PhoneBlock, CSV/JSONL) as tag events."),
    "diff": ("tools.commands.diff", "command", "What a release changed: numbers added, removed, relabelled."),
    "simulate": ("tools.simulate", "command", "Simulate a crowd: callers, calls, tags, ground truth."),
    "consensus": ("tools.commands.consensus", "command", "Turn tag events into calibrated labels."),
    "export-events": ("tools.commands.export_events", "command",
                      "Export the store's tag events as Parquet partitioned by day."),
    "pack": ("tools.commands.pack", "command", "Build, diff, apply and inspect label packs."),
    "teacher": ("tools.commands.model", "COMMANDS:teacher", "Fit and score the call-behaviour teacher."),
    "model": ("tools.commands.model", "COMMANDS:model", "Train and evaluate the on-device student model."),
    "build": ("tools.commands.build", "command", "Build a whole release: consensus → models → packs → deltas."),
    "publish": ("tools.commands.release", "COMMANDS:publish", "Sign and publish a built release to exports/."),
    "promote": ("tools.commands.release", "COMMANDS:promote", "Promote a channel's release (e.g. beta → stable)."),
    "rollback": ("tools.commands.release", "COMMANDS:rollback", "Roll a channel back to an earlier release."),
    "verify": ("tools.commands.release", "COMMANDS:verify", "Verify an exports/ tree from the root of trust."),
    "history": ("tools.commands.release", "COMMANDS:history", "Show the release history."),
    "keys": ("tools.commands.release", "COMMANDS:keys", "Create and rotate signing keys."),
    "rollout": ("tools.commands.release", "COMMANDS:rollout", "Set a channel's staged model rollout percent."),
    "resign": ("tools.commands.release", "COMMANDS:resign", "Re-sign live manifests before they expire."),
    "gc": ("tools.commands.release", "COMMANDS:gc", "Collect artefacts no live manifest or delta window needs."),
    "serve": ("tools.commands.serve", "command", "Run the HTTP server (gunicorn, loopback by default)."),
    "handset": ("tools.handset_cli", "command", "The reference handset client: sync, label, tag, replay."),
    "demo": ("tools.demo", "command", "The main job end to end on embedded defaults."),
}


def one_line(exc: BaseException) -> str:
    """An exception as one line: its message (file names included by the raiser), no traceback."""
    msg = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, EOFError):
        msg = f"input ended early (a truncated or partly copied file?): {msg}"
    elif isinstance(exc, RecursionError):
        msg = "input nested too deeply to read"
    elif type(exc).__module__ == "builtins" and not isinstance(exc, OSError):
        msg = f"{type(exc).__name__}: {msg}"
    return msg[:1000]


def input_errors() -> tuple[type[BaseException], ...]:
    """The exception types every command reports as a one-line error (exit 1) instead of a traceback:
    the library's own errors (which name the file and the problem), unreadable or truncated files,
    bad text encodings, malformed CSV, and JSON refused by callmark.safejson."""
    import csv
    import zlib

    from callmark.errors import CallmarkError
    from callmark.safejson import JSONInputError
    return (CallmarkError, JSONInputError, OSError, EOFError, UnicodeError, csv.Error, zlib.error,
            RecursionError)


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use; input errors of any command
    become one line on stderr (see `input_errors`), never a traceback or click's bare "Aborted!"."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except click.exceptions.ClickException:
            raise
        except input_errors() as exc:
            raise click.ClickException(one_line(exc)) from None

    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        module_name, attr, _ = COMMANDS[name]
        module = importlib.import_module(module_name)
        if ":" in attr:
            table, key = attr.split(":")
            return getattr(module, table)[key]
        return getattr(module, attr)

    def format_commands(self, ctx, formatter):
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="callmark")
@click.option("-q", "--quiet", is_flag=True,
              help="No progress bars or counts on stderr (they are also off when stderr is not a terminal).")
def main(quiet):
    """callmark: caller-ID labels from crowd reports, signed packs, an on-device model, a sync server.

    Example: callmark numbers normalize "+86 138-1234-5678" 95588 --json
    """
    if quiet:
        from callmark.progress import set_quiet
        set_quiet()


if __name__ == "__main__":
    main()
