"""The command-line interface: parses, calls the library, prints.

Each concern registers its commands on the shared :data:`app` from its own module.
"""

from clonefleet.cli import (  # noqa: F401  (registers commands)
    calibrate_cmds,
    gi_cmds,
    plan_cmds,
    provision_cmds,
    rbd_cmds,
    report_cmds,
    sim_cmds,
    storm_cmds,
)
from clonefleet.cli.app import app, main

__all__ = ["app", "main"]
