"""Commands on golden images: build a small real one here, no downloads."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import typer

from clonefleet.cli.app import JSON_OPTION, app, console, emit_json
from clonefleet.errors import UsageError
from clonefleet.units import UnitError, format_bytes, parse_bytes

gi_app = typer.Typer(help="Golden images: build a small real one for demos and tests.", no_args_is_help=True)
app.add_typer(gi_app, name="gi")


def _size(flag: str, text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return parse_bytes(text)
    except UnitError as exc:
        raise UsageError(f"{flag} = {text!r}: {exc}") from None


@gi_app.command("build")
def gi_build_cmd(
    out: Path = typer.Option(Path("out/gi"), "--out", "-o", help="Folder to write the image into."),
    name: str = typer.Option("gi", "--name", help="Image file name, without the extension."),
    size: str = typer.Option("256 MiB", "--size", help="Virtual size, e.g. '256 MiB', '2 GiB'."),
    content: str = typer.Option(None, "--content", help="Bytes of files in the tree (default: a quarter of --size)."),
    fmt: str = typer.Option("qcow2", "--format", help="qcow2 or raw."),
    seed: int = typer.Option(0, "--seed", min=0, max=2**63 - 1,
                             help="Seed of the tree: the same seed gives the same bytes."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Build a golden image with a real ext4 filesystem and an OS-like tree of real files."""
    from clonefleet.provision.goldimage import build_golden_image

    size_bytes = _size("--size", size)
    assert size_bytes is not None
    gi = build_golden_image(out, name, size_bytes=size_bytes, fmt=fmt, seed=seed,
                            content_bytes=_size("--content", content))
    if as_json:
        doc = dataclasses.asdict(gi)
        doc["path"], doc["format"] = str(gi.path), str(gi.format.value)
        emit_json(doc)
        return
    console.print(f"built {gi.path}: {format_bytes(gi.virtual_bytes)} virtual, ext4 with {gi.file_count} files, "
                  f"{format_bytes(gi.used_bytes)} of data (G_used), sha256 {gi.sha256}", markup=False, soft_wrap=True)
