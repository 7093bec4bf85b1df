"""Turn a pydantic ValidationError into a LabError naming the dotted field.

Shared by the scenario sections that can also be validated on their own
(``faults:``, ``resilience:``).  Private: the public entry points are
:func:`lab.faults.parse_faults` and :func:`lab.policies.parse_resilience`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from .errors import LabError


def format_loc(loc: tuple[Any, ...], prefix: str = "") -> str:
    """``("crashes", 0, "mttr_s")`` -> ``"faults.crashes[0].mttr_s"`` with prefix ``faults``."""
    out = prefix
    for p in loc:
        if isinstance(p, int):
            out += f"[{p}]"
        elif isinstance(p, str) and ("[" in p or "(" in p):
            continue  # pydantic's internal validator / union tags
        else:
            out += ("." if out else "") + str(p)
    return out or "(top level)"


def lab_error(exc: ValidationError, *, prefix: str, source: str) -> LabError:
    err = exc.errors()[0]
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown field"
    inp = err.get("input")
    if err["type"] not in ("extra_forbidden", "missing") and not isinstance(inp, dict | list):
        msg = f"{msg} (got {inp!r})"
    return LabError(msg, source=source, field=format_loc(tuple(err["loc"]), prefix))


def parse(model: type[BaseModel], data: Any, *, prefix: str, source: str) -> Any:
    if data is None:
        data = {}
    if isinstance(data, model):
        return data
    if not isinstance(data, Mapping):
        raise LabError(f"{prefix}: must be a mapping of fields", source=source, field=prefix)
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        raise lab_error(exc, prefix=prefix, source=source) from None
