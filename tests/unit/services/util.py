"""The services example fabric, and variants of it, for the services tests (no root)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from flatroute.errors import InvalidInput
from flatroute.fabric import Fabric, parse_fabric
from tests.conftest import EXAMPLES

PATH = EXAMPLES / "services.yaml"
BASE: dict[str, Any] = yaml.safe_load(PATH.read_text())


def doc() -> dict[str, Any]:
    return copy.deepcopy(BASE)


def fabric(mutate: Callable[[dict[str, Any]], None] | None = None) -> Fabric:
    d = doc()
    if mutate is not None:
        mutate(d)
    return parse_fabric(yaml.safe_dump(d), "services.yaml")


def errors(mutate: Callable[[dict[str, Any]], None]) -> list[str]:
    with pytest.raises(InvalidInput) as exc:
        fabric(mutate)
    return [str(e) for e in exc.value.errors]
