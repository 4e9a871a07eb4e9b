"""Which kernel of a GI boots: the newest ``vmlinuz-VERSION`` in ``/boot`` that has its ``initrd.img-VERSION``."""

from __future__ import annotations

import re


def _version_key(version: str) -> list[tuple[int, object]]:
    """Debian-like ordering of kernel versions: numbers compare as numbers (6.1.0-10 after 6.1.0-9)."""
    return [(0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", version) if part]


def newest_kernel(names: list[str]) -> str | None:
    """The newest kernel version among the file names of a ``/boot`` folder that has both its kernel
    (``vmlinuz-V``) and its initramfs (``initrd.img-V``); None when there is none."""
    versions = [n.removeprefix("vmlinuz-") for n in names if n.startswith("vmlinuz-")]
    bootable = [v for v in versions if f"initrd.img-{v}" in names]
    return max(bootable, key=_version_key) if bootable else None
