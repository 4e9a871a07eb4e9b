"""The boot-storm simulator: traces, a validated scenario, an array model and two engines.

``fast`` (numba) and ``reference`` (SimPy) run the same scenario to the same
completion time for every IO; see ``docs/simulator.md``.

The public faces are named here and imported on first use (the engines load
numba, which takes a second: a caller that only reads a trace does not pay it):

- a storm in one call: :func:`run_storm` -> :class:`Storm` of :class:`SimResult`
  (each with its :class:`ScenarioRecord`), on an :class:`Engine`, reporting to a
  :data:`Progress` callback;
- traces: :class:`Trace`, :class:`Arrivals`, :func:`generate_trace`,
  :func:`read_trace` (of :data:`TRACE_FORMATS`), :func:`write_fio_iologs`, :func:`write_csv`,
  :func:`replay_boots` (a captured boot for a whole fleet);
- figures: :func:`write_plots` (each built by :func:`boot_times_figure`, :func:`utilisation_figure`);
- why: :func:`explain_bottleneck`, :func:`explain_replicas`;
- the model against the simulation: :class:`TracePool`, :func:`check_method`, :func:`validate_fleet`,
  :class:`MethodCheck`, :func:`model_golden_images`;
- storms side by side: :func:`storm_executor` (local cores or a Dask cluster), :func:`executor_slots`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clonefleet.progress import Progress, no_progress
    from clonefleet.sim.compare import MethodCheck, TracePool, check_method, validate_fleet
    from clonefleet.sim.explain import explain_bottleneck, explain_replicas
    from clonefleet.sim.parallel import executor_slots, storm_executor
    from clonefleet.sim.plots import boot_times_figure, utilisation_figure, write_plots
    from clonefleet.sim.replay import replay_boots
    from clonefleet.sim.results import Engine, ScenarioRecord, SimResult
    from clonefleet.sim.storm import Storm, model_golden_images, run_storm
    from clonefleet.sim.sweepstorms import StormPoint, check_sweep_storms, sweep_storms
    from clonefleet.sim.trace import Arrivals, Trace, generate_trace
    from clonefleet.sim.traceio import FORMATS as TRACE_FORMATS
    from clonefleet.sim.traceio import read_trace, write_csv, write_fio_iologs

_WHERE = {
    "MethodCheck": "compare", "TracePool": "compare", "check_method": "compare", "validate_fleet": "compare",
    "storm_executor": "parallel", "executor_slots": "parallel",
    "write_plots": "plots", "boot_times_figure": "plots", "utilisation_figure": "plots",
    "explain_bottleneck": "explain", "explain_replicas": "explain",
    "Engine": "results", "ScenarioRecord": "results", "SimResult": "results",
    "Storm": "storm", "model_golden_images": "storm", "run_storm": "storm",
    "Arrivals": "trace", "Trace": "trace", "generate_trace": "trace",
    "TRACE_FORMATS": "traceio", "read_trace": "traceio", "write_fio_iologs": "traceio", "write_csv": "traceio",
    "replay_boots": "replay",
    "StormPoint": "sweepstorms", "sweep_storms": "sweepstorms",
    "check_sweep_storms": "sweepstorms",
}
_RENAMED = {"TRACE_FORMATS": "FORMATS"}

__all__ = [
    "TRACE_FORMATS", "Arrivals", "Engine", "MethodCheck", "Progress", "ScenarioRecord", "SimResult", "Storm",
    "StormPoint", "Trace", "TracePool", "boot_times_figure", "check_method", "check_sweep_storms", "executor_slots",
    "explain_bottleneck", "explain_replicas", "generate_trace", "model_golden_images", "no_progress", "read_trace",
    "replay_boots", "run_storm", "storm_executor", "sweep_storms", "utilisation_figure", "validate_fleet",
    "write_csv", "write_fio_iologs", "write_plots",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE and name not in ("Progress", "no_progress"):
        raise AttributeError(f"module 'clonefleet.sim' has no attribute {name!r}")
    if name in ("Progress", "no_progress"):  # the library's one progress callback, not the simulator's own
        from clonefleet import progress

        return getattr(progress, name)
    module = importlib.import_module(f"clonefleet.sim.{_WHERE[name]}")
    return getattr(module, _RENAMED.get(name, name))
