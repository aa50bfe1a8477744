"""What a test imports or runs is installed by the project itself (issue 14, item 1).

A fresh machine gets only what `scripts/install-deps` installs: the Debian packages of its
APT_PACKAGES list and the Python package with its dev extras. A test that imports a module no
declared distribution provides, or needs a tool no listed (or base-system) Debian package
ships, fails on that machine: these tests find such gaps on this one.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
TOOL_CALLS = {"need_tool", "_need", "which"}  # need_tool(...), _need(...), shutil.which(...)


def _pyproject() -> dict[str, object]:
    with (ROOT / "pyproject.toml").open("rb") as fh:
        return tomllib.load(fh)


def _requirement_name(spec: str) -> str:
    return re.split(r"[<>=!~\[; ]", spec, maxsplit=1)[0].lower().replace("_", "-")


def declared_distributions() -> set[str]:
    """pyproject's dependencies and extras, and what they require in turn (installed with
    them: urllib3 comes with kubernetes)."""
    project = _pyproject()["project"]
    assert isinstance(project, dict)
    specs = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        specs += extra
    todo = [_requirement_name(s) for s in specs]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue  # reported by the import check if a test needs it
        todo += [_requirement_name(r) for r in requires if "extra ==" not in r]
    return seen


def _modules() -> list[ast.Module]:
    return [ast.parse(p.read_text(), str(p)) for p in sorted(TESTS.rglob("*.py"))]


def imported_top_levels() -> set[str]:
    names: set[str] = set()
    for tree in _modules():
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


def _project_packages() -> set[str]:
    """The top-level packages this distribution ships (pyproject's packages.find), the tests."""
    tool = _pyproject()["tool"]
    assert isinstance(tool, dict)
    include = tool["setuptools"]["packages"]["find"]["include"]
    found = {p.rstrip("*").split(".")[0] for p in include}
    return found | {"tests", "conftest"}  # conftest: pytest's rootdir-relative import


def test_every_module_a_test_imports_is_declared() -> None:
    providers = importlib.metadata.packages_distributions()
    declared = declared_distributions()
    missing = []
    for name in sorted(imported_top_levels() - _project_packages()):
        if name in sys.stdlib_module_names:
            continue
        dists = {d.lower().replace("_", "-") for d in providers.get(name, [])}
        if not dists & declared:
            missing.append(f"{name} (from {sorted(dists) or 'nothing installed'})")
    assert missing == [], "imported by tests, not in pyproject dependencies or extras"


def tools_tests_need() -> set[str]:
    tools: set[str] = set()
    for tree in _modules():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in TOOL_CALLS:
                tools |= {a.value for a in node.args
                          if isinstance(a, ast.Constant) and isinstance(a.value, str)}
    for tree in _modules():  # BGPD = "/usr/lib/frr/bgpd" and the like, passed by name
        for node in ast.walk(tree):
            if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
                    and isinstance(node.value.value, str)
                    and node.value.value.startswith("/usr/lib/frr/")):
                tools.add(node.value.value)
    return tools


def apt_packages() -> set[str]:
    text = (ROOT / "scripts" / "install-deps").read_text()
    match = re.search(r"APT_PACKAGES=\(([^)]*)\)", text)
    assert match, "scripts/install-deps lists its Debian packages in APT_PACKAGES=(...)"
    return set(match.group(1).split())


def _dpkg(*args: str) -> str:
    return subprocess.run(["dpkg-query", *args], capture_output=True, text=True,
                          check=False).stdout


def _base_system(package: str) -> bool:
    """Essential or required packages: on every Debian installation before we start."""
    fields = _dpkg("-W", "-f", "${Essential} ${Priority}", package).split()
    return "yes" in fields or "required" in fields


def _owner(path: str) -> str | None:
    """The Debian package shipping `path`; merged /usr: dpkg may know it as /sbin/x."""
    for candidate in (path, str(Path(path).resolve())):
        bare = candidate.removeprefix("/usr")
        for probe in (candidate, bare, "/usr" + bare):
            owners = [line.split(":")[0].split(",")[0].strip()
                      for line in _dpkg("-S", probe).splitlines()
                      if not line.startswith("diversion by")]  # /bin/sh: dash's diversion
            if owners:
                return owners[0]
    return None


def test_every_tool_a_test_runs_is_installed_by_install_deps() -> None:
    if shutil.which("dpkg-query") is None:
        pytest.fail("this check reads Debian's package database: dpkg-query is missing")
    listed = apt_packages()
    gaps = []
    scripts = {str(Path(sys.executable).parent)}  # pip's console scripts: exabgp, flatroute
    for tool in sorted(tools_tests_need()):
        path = tool if tool.startswith("/") else shutil.which(tool)
        if path is None or not Path(path).exists():
            gaps.append(f"{tool}: not installed here")
            continue
        if str(Path(path).parent) in scripts:
            continue
        owner = _owner(path)
        if owner is None:
            gaps.append(f"{tool}: {path} belongs to no Debian package and is not pip's")
        elif owner not in listed and not _base_system(owner):
            gaps.append(f"{tool}: from Debian package {owner}, not in APT_PACKAGES")
    assert gaps == []
