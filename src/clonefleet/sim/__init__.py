"""The boot-storm simulator: traces, a validated scenario, an array model and two engines.

``fast`` (numba) and ``reference`` (SimPy) run the same scenario to the same
completion time for every IO; see ``docs/simulator.md``.
"""
