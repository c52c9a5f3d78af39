"""Faults you can turn on while Bookline runs: ``DATA_DIR/faults.yaml``, re-read by every service,
changed with ``bookline faults set | show | clear``; each fault that fires is a ``fault_injected``
span event on the step it affects."""

from bookline.faults.events import FAULT_INJECTED, fire, strikes
from bookline.faults.file import FaultFile
from bookline.faults.model import FaultError, Faults, fault_keys

__all__ = ["FAULT_INJECTED", "FaultError", "FaultFile", "Faults", "fault_keys", "fire", "strikes"]
