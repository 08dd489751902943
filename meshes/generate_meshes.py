"""Regenerate the shipped biventricular meshes (and the large benchmark mesh).

Usage::

    python meshes/generate_meshes.py                 # bivent_10k.vtu and bivent_65k.vtu (shipped)
    python meshes/generate_meshes.py --size large    # bivent_large.vtu (~415k tets, git-ignored)
    python meshes/generate_meshes.py --size all

The meshes come from :func:`physim.cardiac.heart.biventricular_mesh`, a
deterministic structured construction (no external mesher); see that module
for the geometry. Files are written next to this script as
``bivent_<size>.vtu`` with surface masks (``lv_endo``, ``rv_endo``, ``epi``,
``base``, ``apex``) and construction coordinates (``transmural``,
``apicobasal``) as point data and ``region`` (0 LV free wall, 1 septum,
2 RV free wall) as cell data.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from physim.cardiac.heart import biventricular_mesh, save_biventricular, tet_volumes

HERE = Path(__file__).resolve().parent
SHIPPED = ("10k", "65k")


def generate(size: str, out_dir: Path = HERE) -> Path:
    t0 = time.perf_counter()
    mesh = biventricular_mesh(size)
    path = save_biventricular(mesh, out_dir / f"bivent_{size}.vtu")
    vol = tet_volumes(mesh.points, mesh.tets)
    print(
        f"{path.name}: {mesh.n_points} points, {mesh.n_tets} tets, "
        f"volume {vol.sum() / 1e3:.1f} ml, min tet volume {vol.min():.3g} mm^3, "
        f"{path.stat().st_size / 1e6:.2f} MB, {time.perf_counter() - t0:.1f} s"
    )
    return path


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=[*SHIPPED, "large", "shipped", "all"], default="shipped")
    ap.add_argument("--out", type=Path, default=HERE, help="output directory (default: meshes/)")
    args = ap.parse_args(argv)
    sizes = {"shipped": SHIPPED, "all": (*SHIPPED, "large")}.get(args.size, (args.size,))
    for s in sizes:
        generate(s, args.out)


if __name__ == "__main__":
    main()
