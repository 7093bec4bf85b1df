"""Architecture comparison lab: API orchestration vs event-driven integration."""

from .errors import LabError
from .scenario import Scenario, load_scenario

__all__ = ["LabError", "Scenario", "load_scenario"]
__version__ = "0.1.0"
