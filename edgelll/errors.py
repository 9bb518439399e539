"""One family of errors for everything a user can get wrong.

Library code raises a subclass of :class:`EdgelllError` whose message is one line that says what is
wrong and what to do next; the CLI prints that line and exits with code 2.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class EdgelllError(Exception):
    """Bad input or an impossible request; the message is shown to the user as is."""


class ConfigError(EdgelllError):
    """An option, config file or ``--set`` override that cannot be used."""


class DataError(EdgelllError):
    """A data file or array that is missing, malformed or inconsistent."""


class BudgetError(EdgelllError):
    """A memory or compute budget that the requested run cannot fit in."""


class CheckpointError(EdgelllError):
    """A checkpoint or run directory that is corrupt, missing or does not match the run."""


class OutputError(EdgelllError):
    """A file or directory the run cannot write (a full disk, no permission), or one in use."""


class ExportError(EdgelllError):
    """A run that cannot be exported as asked (a failed parity or accuracy check, a shape the
    exporter cannot trace, an output that would replace a newer export)."""


class EdgelllWarning(UserWarning):
    """Something edgelll assumed on the user's behalf (e.g. an image layout); the CLI shows it as
    one ``warning:`` line, and hides every other library's warnings unless ``--debug``."""


def unknown_name(kind: str, name: str, known: Iterable[str]) -> str:
    """A one-line message for an unknown name, with the closest known names as suggestions."""
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    return f"unknown {kind} {name!r}; {hint}choose from: {', '.join(known)}"
