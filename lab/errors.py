"""User-facing errors.

A :class:`LabError` is a mistake in the user's input (a scenario, a sweep file, a
command-line value). The CLI turns it into exit code 2 and one line on stderr that names
the file and the field; the library raises it and never prints.
"""

from __future__ import annotations


class LabError(Exception):
    """A user mistake: bad file, bad field, impossible value.

    ``source`` names the file (or ``<keywords>``, ``--set``), ``field`` the dotted path of
    the offending field (or ``line N`` for syntax errors).
    """

    def __init__(self, message: str, *, source: str | None = None, field: str | None = None):
        self.message = message
        self.source = source
        self.field = field
        super().__init__(self.one_line())

    def one_line(self) -> str:
        where = ": ".join(p for p in (self.source, self.field) if p)
        text = f"{where}: {self.message}" if where else self.message
        return " ".join(text.split())


class EngineUnavailable(LabError):
    """A real engine cannot run here (no Java, no Maven, no broker reachable)."""
