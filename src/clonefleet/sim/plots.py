"""Figures of one run: the boot-time distribution and each resource's utilisation over time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from clonefleet.errors import output_folder
from clonefleet.sim.results import SimResult


def _save(fig: Any, ax: Any, title: str, path: Path) -> Path:
    """Title, legend, tight layout; write the figure to ``path`` and free it."""
    import matplotlib.pyplot as plt

    ax.set_title(title, fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_plots(result: SimResult, folder: str | Path) -> list[Path]:
    """Write ``boot_times.png`` and ``utilisation.png`` into ``folder``; return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = output_folder(folder, "--plots")
    sc = result.scenario
    title = f"{sc.vms} x {sc.fleet} on {sc.array}, {sc.function} (seed {result.seed})"

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.hist(result.boot_s, bins=min(50, max(5, len(result.boot_s) // 5)), color="tab:blue")
    ax.axvline(result.boot_window_s, color="tab:red", linestyle="--", label="nominal window (boot IOs / A)")
    ax.set_xlabel("boot time [s]")
    ax.set_ylabel("VMs")
    boot_path = _save(fig, ax, title, out / "boot_times.png")

    fig, ax = plt.subplots(figsize=(7, 4))
    for u in result.utilisation:
        if u.servers == 0 or not len(u.series):
            continue
        t = (np.arange(len(u.series)) + 0.5) * result.util_bin_s
        ax.plot(t, u.series, label=f"{u.resource} ({u.servers})")
    ax.set_xlabel("time [s]")
    ax.set_ylabel("utilisation (busy share of the class)")
    ax.set_ylim(0, 1.05)
    return [boot_path, _save(fig, ax, title, out / "utilisation.png")]
