"""The planner's one error channel: every part of the planner reports here, none raises.

Two kinds of problem, and what follows is the caller's (the `plan` function's) decision:
- a node problem (a pool or range exhausted, no router-id) concerns one node or rack: it is
  reported in the plan, and the controller holds that node back until there is room;
- a fabric problem (a policy waypoint with no SID) is a field error of the fabric itself:
  the plan is rejected whole as InvalidInput, with the field path, as the loader's are.
"""

from __future__ import annotations

from flatroute.errors import FieldError, InvalidInput, field_error
from flatroute.plan.model import Problem


class Problems:
    def __init__(self, source: str) -> None:
        self.source = source
        self.nodes: list[Problem] = []
        self.fields: list[FieldError] = []

    def node(self, name: str, message: str) -> None:
        """`name` (a node or a rack) could not get something; the plan goes on."""
        self.nodes.append(Problem(name, message))

    def field(self, path: str, message: str, value: object) -> None:
        """The fabric is invalid at `path`; the plan will be rejected."""
        self.fields.append(field_error(self.source, path, message, value))

    def raise_invalid(self) -> None:
        if self.fields:
            raise InvalidInput(self.fields)
