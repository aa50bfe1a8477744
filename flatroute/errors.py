"""The one error hierarchy of flatroute.

Every layer raises these; each edge (CLI, CNI, reconcilers) maps them once:
the CLI to an exit status, the CNI plugin to the spec's error codes. The reconcilers
never give up: they log the error and try again at their next cycle (the Kubernetes
reflectors after a jittered exponential backoff). Where an error asks for something else,
its type says so, not a flag: `Gone` relists at once; `Conflict` reads again (or, on the
ledger or the Lease, stands down for this term).
"""

from __future__ import annotations

from dataclasses import dataclass


class FlatrouteError(Exception):
    """Base of every error flatroute raises on purpose."""

    #: CLI exit status for this kind of error.
    exit_status = 1


@dataclass(frozen=True, slots=True)
class FieldError:
    """One problem in an input document: where it is, what is wrong, with which value."""

    source: str
    path: str
    message: str
    value: object = None
    has_value: bool = False

    def __str__(self) -> str:
        where = f"{self.source}: {self.path}" if self.path else self.source
        if self.has_value:
            return f"{where}: {self.message} (got {self.value!r})"
        return f"{where}: {self.message}"


class InvalidInput(FlatrouteError):
    """Input that fails validation; carries every problem found, not just the first."""

    exit_status = 2

    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = tuple(errors)
        super().__init__("\n".join(str(e) for e in errors))


class AllocationError(FlatrouteError):
    """A pool, range or locator block has no room left for what the fabric asks."""

    exit_status = 1


class AdapterError(FlatrouteError):
    """An external system (kernel, ExaBGP, FRR, Kubernetes, a file) failed."""


def field_error(source: str, path: str, message: str, *value: object) -> FieldError:
    """Build a FieldError; pass the offending value as the optional fourth argument."""
    if value:
        return FieldError(source, path, message, value[0], True)
    return FieldError(source, path, message)
