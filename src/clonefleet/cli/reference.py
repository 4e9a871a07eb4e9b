"""docs/cli.md: every command's ``--help``, generated from the typer app's click command tree.

``python -m clonefleet.cli.reference docs/cli.md`` (``make docs``) writes it; a test (tests/cli/test_cli_reference.py)
fails when the committed file and what the code generates differ, so the reference never falls out of step
with the commands. The help is laid out for a fixed width, so the file does not depend on the terminal.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import click
import typer

#: Columns the help is laid out for in the reference.
WIDTH = 100
HEADER = """# Command reference (generated)

Every command's `--help`, generated from the code by `make docs`
(`python -m clonefleet.cli.reference docs/cli.md`); a test fails when this file and the code differ.
What each command prints and its JSON fields: [reference.md](reference.md).
"""


def _context(cmd: click.Command, name: str, parent: click.Context | None) -> click.Context:
    return click.Context(cmd, info_name=name, parent=parent, terminal_width=WIDTH, max_content_width=WIDTH)


def commands(root: click.Command) -> Iterator[tuple[str, click.Command, click.Context]]:
    """Every command under ``root`` (itself first), depth first in the order they are listed."""

    def walk(cmd: click.Command, ctx: click.Context, path: str) -> Iterator[tuple[str, click.Command, click.Context]]:
        yield path, cmd, ctx
        if isinstance(cmd, click.Group):
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)
                if sub is not None and not sub.hidden:
                    yield from walk(sub, _context(sub, name, ctx), f"{path} {name}")

    yield from walk(root, _context(root, "clonefleet", None), "clonefleet")


def cli_reference(app: typer.Typer | None = None) -> str:
    """The reference's Markdown: a contents list, then per command its help in a code block."""
    if app is None:
        from clonefleet.cli import app as default_app

        app = default_app
    found = list(commands(typer.main.get_command(app)))
    lines = [HEADER, "## Commands", ""]
    lines += [f"- [`{path}`](#{path.replace(' ', '-')})" for path, _, _ in found]
    for path, cmd, ctx in found:
        lines += ["", f"## {path}", "", "```text", cmd.get_help(ctx).rstrip(), "```"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m clonefleet.cli.reference FILE (e.g. docs/cli.md)", file=sys.stderr)
        return 2
    Path(args[0]).write_text(cli_reference(), encoding="utf-8")
    print(f"wrote {args[0]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
