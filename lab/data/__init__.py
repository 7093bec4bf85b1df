"""Data files shipped with the lab (read with :mod:`importlib.resources`).

``eskom_stage_record.csv``: South Africa's announced load-shedding stages, July 2022 to May 2025,
from eskom-calendar; attribution and licence in the repository's ``data/README.md``.
"""
