"""Golden renders: every example fabric x every platform, under fabric-configs/rendered/.

    python -m render.golden          # regenerate (after an intended change)
    python -m render.golden --check  # exit 1 and show the diff if any differ

Layout: `fabric-configs/rendered/<fabric>/<platform>/<file>`; where the platform cannot express
what the fabric asks, the directory holds `ERRORS.txt` (one line per error) instead.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from flatroute.errors import InvalidInput
from flatroute.fabric import parse_fabric
from render import PLATFORMS, render
from render.common import RenderedFile
from render.output import diff_files, write_files

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = "fabric-configs/examples"
RENDERED = "fabric-configs/rendered"
ERRORS = "ERRORS.txt"


def golden_files(root: Path = ROOT) -> dict[str, list[RenderedFile]]:
    """Per example fabric name: the files of every platform (platform = subdirectory)."""
    out: dict[str, list[RenderedFile]] = {}
    for path in sorted((root / EXAMPLES).glob("*.yaml")):
        rel = f"{EXAMPLES}/{path.name}"  # stable in error messages, wherever we run from
        fabric = parse_fabric(path.read_text(encoding="utf-8"), rel)
        files: list[RenderedFile] = []
        for name in PLATFORMS:
            try:
                files += render(fabric, platform=name)
            except InvalidInput as exc:
                text = "".join(f"{e}\n" for e in exc.errors)
                files.append(RenderedFile("-", name, ERRORS, text))
        out[fabric.name] = files
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m render.golden")
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 on change")
    args = parser.parse_args(argv)
    changed = False
    for fabric, files in golden_files().items():
        target = ROOT / RENDERED / fabric
        if args.check:
            text = diff_files(files, target, by_platform=True)
            if text:
                sys.stdout.write(text)
                changed = True
            continue
        wanted = {target / f.platform / f.name for f in files}
        for old in sorted(target.rglob("*")) if target.is_dir() else []:
            if old.is_file() and old not in wanted:
                old.unlink()
        for path in write_files(files, target, by_platform=True):
            print(f"wrote {path.relative_to(ROOT)}")
    return 1 if changed else 0


if __name__ == "__main__":
    sys.exit(main())
