"""docs/cli.md is every command's --help as the code has it: regenerate it with 'make docs' when this fails."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

from clonefleet.cli import app
from clonefleet.cli.reference import cli_reference, commands

DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def test_the_committed_reference_is_what_the_code_generates() -> None:
    committed = DOC.read_text(encoding="utf-8")
    generated = cli_reference()
    assert committed == generated, ("docs/cli.md is out of step with the commands' help: run 'make docs' "
                                    "(python -m clonefleet.cli.reference docs/cli.md) and commit it")


def test_every_command_is_in_the_reference_with_its_help() -> None:
    text = DOC.read_text(encoding="utf-8")
    paths = [path for path, _, _ in commands(typer.main.get_command(app))]
    assert "clonefleet report" in paths and "clonefleet presets show" in paths and len(paths) > 20
    for path in paths:
        assert f"\n## {path}\n" in text and f"Usage: {path} " in text, path


def test_a_changed_help_text_makes_the_reference_differ(monkeypatch: pytest.MonkeyPatch) -> None:
    # the check above can fail: change one option's help the way an edit would, and the generated text moves
    from clonefleet.cli import report_cmds

    before = cli_reference()
    original = report_cmds.report_cmd.__doc__
    monkeypatch.setattr(report_cmds.report_cmd, "__doc__", (original or "") + " Changed.")
    after = cli_reference()
    assert after != before and "Changed." in after
