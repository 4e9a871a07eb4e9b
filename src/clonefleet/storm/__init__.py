"""Real boot storms on provisioned clones: fio replays each VM's boot, the storage answers.

:func:`run_storm` is the entry point (``clonefleet storm``); :mod:`.workload` decides what each
VM replays, :mod:`.daemon` serves qcow2 clones over NBD, :mod:`.fio` writes the job and reads
fio's results, :mod:`.results` holds them. :func:`run_boot_storm` (``clonefleet storm --boot``,
:mod:`.boot`) boots the clones as real VMs under QEMU instead.
"""

from clonefleet.storm.boot import run_boot_storm
from clonefleet.storm.results import StormResult, VmResult
from clonefleet.storm.run import ENGINES, StormFailed, StormRequest, run_storm

__all__ = ["ENGINES", "StormFailed", "StormRequest", "StormResult", "VmResult", "run_boot_storm", "run_storm"]
