"""clonefleet: plan, simulate, provision and measure fleets of VMs cloned from golden images.

The library can be used without the CLI::

    from clonefleet import load_fleet, load_array, plan
    result = plan(load_fleet("desktop-win7"), load_array("midrange-2012"), vms=1000)
    print(result.recommended, result.reason)
"""

from clonefleet.errors import ClonefleetError, UsageError
from clonefleet.planner import MethodPlan, Plan, plan
from clonefleet.presets import load_array, load_fleet, load_function

__all__ = [
    "ClonefleetError",
    "MethodPlan",
    "Plan",
    "UsageError",
    "load_array",
    "load_fleet",
    "load_function",
    "plan",
]
__version__ = "0.1.0"
