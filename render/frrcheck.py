"""Check a rendered FRR configuration with the real daemons (`bgpd -C`, `zebra -C`, `bfdd -C`).

`-C` exits 0 even when a line fails, so the output is read: a daemon may reject only lines that
belong to another daemon (an `interface` block is zebra's, a `bfd` block is bfdd's, `router
bgp` is bgpd's); any "Config Failed" or `%` warning is an error. Used by the tests and usable by
the network team: `python -m render.frrcheck FILE...`.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

FRR_DIR = Path("/usr/lib/frr")
DAEMONS = ("bgpd", "zebra", "bfdd")
_LINE = re.compile(r"on config line (\d+):")

ALL = frozenset(DAEMONS)
# Which daemons must understand the lines of each top-level block (others: every daemon).
_BLOCK_OWNER = {"interface": frozenset({"zebra"}), "bfd": frozenset({"bfdd"}),
                "router": frozenset({"bgpd"}), "route-map": frozenset({"bgpd", "zebra"})}
# Route-map clauses only bgpd knows.
_BGP_ONLY = ("set community", "match community", "set large-community")


def owners(text: str) -> list[frozenset[str]]:
    """Per line (0-based): the daemons that must understand it."""
    out: list[frozenset[str]] = []
    block = ALL
    for raw in text.splitlines():
        line = raw.rstrip()
        if not line or line.lstrip().startswith("!"):
            if line == "!":
                block = ALL
            out.append(ALL)
            continue
        if not line.startswith(" "):
            block = _BLOCK_OWNER.get(line.split()[0], ALL)
            out.append(block)
            continue
        if line.strip().startswith(_BGP_ONLY):
            out.append(frozenset({"bgpd"}))
        else:
            out.append(block)
    return out


def check_text(text: str, path: Path, daemons: tuple[str, ...] = DAEMONS) -> list[str]:
    """Problems found by the real daemons in the file at `path` (holding `text`)."""
    own = owners(text)
    lines = text.splitlines()
    problems: list[str] = []
    for daemon in daemons:
        proc = subprocess.run([str(FRR_DIR / daemon), "-C", "-f", str(path)],
                              capture_output=True, text=True, timeout=30, check=False)
        if proc.returncode != 0:
            problems.append(f"{daemon}: exit {proc.returncode}: {proc.stderr.strip()}")
        for msg in (proc.stdout + proc.stderr).splitlines():
            if msg.startswith("%"):
                problems.append(f"{daemon}: {msg}")
                continue
            m = _LINE.search(msg)
            if m is None:
                continue
            n = int(m.group(1)) - 1
            owner = own[n] if 0 <= n < len(own) else ALL
            if "Config Failed" in msg or daemon in owner:
                text_line = lines[n] if 0 <= n < len(lines) else "?"
                problems.append(f"{daemon}: line {n + 1}: {text_line.strip()}: {msg}")
    return problems


def check_file(path: Path, daemons: tuple[str, ...] = DAEMONS) -> list[str]:
    return check_text(path.read_text(encoding="utf-8"), path, daemons)


def main(argv: list[str] | None = None) -> int:
    bad = 0
    for name in argv if argv is not None else sys.argv[1:]:
        for problem in check_file(Path(name)):
            print(f"{name}: {problem}")
            bad += 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
