"""Architecture comparison lab: API orchestration vs event-driven integration.

>>> import lab
>>> result = lab.simulate("mm1-teaching", seed=1)
>>> result.summary  # one row per style
"""

from .assess import assess
from .claims import check_claims
from .errors import LabError
from .records import SUMMARY_COLUMNS
from .result import RunResult
from .run import run, simulate
from .scenario import Scenario, load_scenario, preset_names
from .sweep import read_sweep, sweep, sweep_ci

__all__ = ["assess", "check_claims", "LabError", "RunResult", "SUMMARY_COLUMNS", "Scenario", "load_scenario", "preset_names", "run", "simulate",
           "sweep", "sweep_ci", "read_sweep"]
__version__ = "0.1.0"
