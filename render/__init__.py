"""`flatroute render`: the network team's side of the peering, from the same fabric file.

`render(fabric)` plans the fabric (or takes a plan), builds one platform-neutral `RouterView`
per router (`render.view`) and hands it to the router's platform module. Each module
has `NAME`, `UNSUPPORTED` (feature -> why it cannot be expressed) and `render(view)`.

Platform choice: `platform=None` uses each router's own `platform:` field; a platform name
forces that platform for every router.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from flatroute.errors import AllocationError, FieldError, InvalidInput
from flatroute.fabric.model import Fabric
from flatroute.plan import plan as make_plan
from flatroute.plan.model import Plan
from render import eos, frr, junos, nxos, sonic
from render.common import RenderedFile, check
from render.view import build_views

PLATFORMS: dict[str, ModuleType] = {
    m.NAME: m for m in (frr, sonic, eos, nxos, junos)
}


def read_secret(fabric: Fabric) -> str | None:
    """The MD5 secret from `spec.bgp.md5.secretRef.file` (for --with-secrets)."""
    ref = fabric.bgp.md5
    if ref is None:
        return None
    path = "spec.bgp.md5.secretRef"
    if not ref.file:
        raise InvalidInput([FieldError(fabric.source, path, "--with-secrets reads only a "
                                       "secretRef.file; this fabric names a Kubernetes Secret "
                                       f"({ref.describe()})")])
    try:
        secret = Path(ref.file).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise InvalidInput([FieldError(fabric.source, f"{path}.file", "cannot read the MD5 "
                                       f"secret file: {exc.strerror}", ref.file, True)]) from exc
    if not secret or len(secret) > 80 or any(c.isspace() or c in "\"'{};#!" for c in secret):
        # Never echo the secret itself.
        raise InvalidInput([FieldError(fabric.source, f"{path}.file", "the MD5 secret must be "
                                       "1 to 80 characters without spaces, quotes, braces, "
                                       "';', '#' or '!'", ref.file, True)])
    return secret


def render(fabric: Fabric, plan: Plan | None = None, *, platform: str | None = None,
           with_secrets: bool = False, routers: tuple[str, ...] = ()) -> list[RenderedFile]:
    """Render every router (or only `routers`); InvalidInput lists every problem at once."""
    if platform is not None and platform not in PLATFORMS:
        raise InvalidInput([FieldError("--platform", "", f"unknown platform (choose from "
                                       f"{', '.join(PLATFORMS)})", platform, True)])
    p = plan if plan is not None else make_plan(fabric)
    if p.problems:  # e.g. an exhausted pool: the routers would not match the nodes
        raise AllocationError(f"{fabric.source}: cannot plan: "
                              + "; ".join(str(x) for x in p.problems))
    secret = read_secret(fabric) if with_secrets else None
    views = build_views(fabric, p, secret)
    if routers:
        unknown = sorted(set(routers) - {v.router.name for v in views})
        if unknown:
            raise InvalidInput([FieldError("--router", "", "names no router of the fabric",
                                           name, True) for name in unknown])
        views = [v for v in views if v.router.name in routers]
    errors: list[FieldError] = []
    files: list[RenderedFile] = []
    for view in views:
        name = platform or view.router.platform.value
        module = PLATFORMS[name]
        problems = check(view, name, module.UNSUPPORTED)
        if problems:
            errors += problems
            continue
        files += module.render(view)
    if errors:
        raise InvalidInput(errors)
    return files


__all__ = ["PLATFORMS", "RenderedFile", "read_secret", "render"]
