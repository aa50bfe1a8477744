"""Golden renders: every example fabric x every platform matches fabric-configs/rendered/.

After an intended change: `python -m render.golden` (then review the diff)."""

from __future__ import annotations

import pytest

from render import PLATFORMS
from render.golden import RENDERED, ROOT, golden_files

GOLDEN = golden_files()


def test_every_example_is_rendered_for_every_platform() -> None:
    assert set(GOLDEN) >= {"single-rack", "leaf-spine", "two-site", "unnumbered"}
    for files in GOLDEN.values():
        assert {f.platform for f in files} == set(PLATFORMS)


@pytest.mark.parametrize("fabric", sorted(GOLDEN))
@pytest.mark.parametrize("platform", sorted(PLATFORMS))
def test_render_matches_golden(fabric: str, platform: str) -> None:
    base = ROOT / RENDERED / fabric / platform
    files = {f.name: f.text for f in GOLDEN[fabric] if f.platform == platform}
    on_disk = {p.name for p in base.iterdir()} if base.is_dir() else set()
    assert on_disk == set(files), "run: python -m render.golden"
    for name, text in files.items():
        assert (base / name).read_text() == text, (
            f"{fabric}/{platform}/{name} differs: run python -m render.golden "
            "and review the diff")


def test_rerender_is_byte_identical() -> None:
    again = golden_files()
    assert {k: [(f.name, f.text) for f in v] for k, v in again.items()} == {
        k: [(f.name, f.text) for f in v] for k, v in GOLDEN.items()}
