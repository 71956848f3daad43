"""The exceptions mutomo raises for input it refuses.

Every refusal of user input (a configuration, a design file, a hits file, a checkpoint, an
argument of a public constructor) is a :class:`MutomoError` whose message names the file, the
field or the row at fault and what is allowed. The command line turns it into one line on
stderr and exit code 2 (:mod:`mutomo.app.cli`). :class:`MutomoError` derives from
:class:`ValueError`, so code that caught ``ValueError`` before still catches it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


class MutomoError(ValueError):
    """Input that mutomo refuses; the message says where it is and what is allowed."""


class ConfigError(MutomoError):
    """A configuration that does not validate; the message names every bad field."""


class DesignFileError(MutomoError):
    """A design file (JSON) that is not a valid design."""


class HitsFileError(MutomoError):
    """A hits file that cannot be read as the format it claims to be."""


class CheckpointError(MutomoError):
    """A checkpoint that cannot be read (truncated, corrupt or from another run)."""


class RunDirectoryError(MutomoError):
    """A run directory that is missing, unfinished or cannot be written."""


class MutomoWarning(UserWarning):
    """Input that mutomo accepts but that may not mean what the user thinks (e.g. a design made
    for another scene); the command line prints it as one ``warning:`` line."""


class UnknownMaterialError(MutomoError, KeyError):
    """A material name that is neither built in nor defined (also a ``KeyError``, as a lookup)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


@contextlib.contextmanager
def naming_the_source(source: str) -> Iterator[None]:
    """Prefix a configuration error found once things are built (a material, the region, a
    design) with the configuration it comes from, as the validation's own errors are."""
    try:
        yield
    except ConfigError as exc:
        message = str(exc)
        raise ConfigError(message if message.startswith(source) else f"{source}: {message}") from None
