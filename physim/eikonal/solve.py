"""Forward eikonal solve: anisotropic activation times on a simplex mesh.

Solves ``sqrt(∇φᵀ D ∇φ) = 1`` (fim-python convention: ``D`` is the squared
velocity tensor, ``D = v² I`` for isotropic speed ``v``; mm, ms, mm/ms) with
``φ = t_k`` at the sources, by the fast iterative method (Fu, Kirby &
Whitaker, SIAM J. Sci. Comput. 2013) with the standard piecewise-linear local
update (see :mod:`physim.eikonal._fim`). The discrete solution is the
fixed point ``φ_i = min(init_i, min_{e ∋ i} U_e(i))``: the minimum over the
incident elements of the local update from the element's other vertices,
which is also what fim-python computes on the same mesh and ``D``. Linear
(plane-wave) solutions are reproduced exactly on any mesh.

Sources are either mesh nodes (``φ = t_k`` there) or arbitrary points inside
the mesh, whose containing element's vertices are initialised exactly with
``t_k + |x − p|_{D_e⁻¹}``. Optionally every node within ``init_radius`` of a
source is initialised the same way (locally constant ``D``), which removes
the first-order error that a point source otherwise spreads through the
whole domain. Initialised values are upper bounds: a wave arriving earlier
from elsewhere still replaces them.

The returned :class:`Activation` records, for every node, the element and
local update (tet / face / edge, with its upwind support) that produced its
final time, or the source that initialised it: :func:`physim.eikonal.adjoint`
differentiates through that record without re-running the forward solve.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numba
import numpy as np
from numpy.typing import ArrayLike

from .._result import Result
from .._validate import as_float_array, as_index_array, as_int, as_scalar, check_spd
from ..errors import ConvergenceError, InvalidInputError, InvalidTypeError, ShapeError
from . import _fim as F
from . import _graph as G
from . import _kernels as K
from .mesh import SimplexMesh

__all__ = ["Activation", "solve", "UnreachedPointsWarning", "prepare_D"]

#: visits per node before small drops are left pending for a policy evaluation
_CAP = 3
#: the same where the conduction is mildly anisotropic (median v_max / v_min of the elements at most
#: ``_MILD``): there few drops are cyclic, and a policy evaluation forced by an early cap changes
#: thousands of nodes by tiny amounts that must then be propagated again
_CAP_MILD = 20
_MILD = 3.5
#: the same after a policy evaluation
_CAP_NEWTON = 1
#: drops above this many typical metric heights always re-activate a node
_BIG = 0.25
#: Gauss–Seidel sweeps per cyclic component in a policy evaluation
_POLICY_SWEEPS = 200
#: relative size (w.r.t. the largest time) of a pending drop treated as round-off
_ROUNDOFF = 1e-13
#: propagation in batches: nodes popped together from the heap lie within this many typical metric heights
_BAND = 0.1
#: ... and at most this many of them
_BATCH = 256


class UnreachedPointsWarning(RuntimeWarning):
    """Some mesh points used by elements were not reached by any source (their time is inf)."""


class UnitsWarning(UserWarning):
    """A mesh extent or activation times implausible for physim's units (mm, ms, mm/ms)."""


#: mesh extents (bounding-box diagonal, mm) and activation spans (ms) outside these ranges draw a
#: UnitsWarning: a heart in metres is ~0.1 "mm" across and activates in ~0.05 "ms"
PLAUSIBLE_EXTENT_MM = (1.0, 1e5)
PLAUSIBLE_SPAN_MS = (0.1, 1e6)


def _check_units(mesh, phi, velocity_given: bool) -> None:
    lo, hi = mesh.points.min(axis=0), mesh.points.max(axis=0)
    extent = float(np.linalg.norm(hi - lo))
    hints = []
    if extent < PLAUSIBLE_EXTENT_MM[0]:
        hints.append(f"the mesh is {extent:.3g} mm across (is it in metres? physim.eikonal uses mm)")
    elif extent > PLAUSIBLE_EXTENT_MM[1]:
        hints.append(f"the mesh is {extent:.3g} mm across (is it in micrometres? physim.eikonal uses mm)")
    t = phi[np.isfinite(phi)]
    span = float(t.max() - t.min()) if t.size else 0.0
    if t.size and 0.0 < span < PLAUSIBLE_SPAN_MS[0]:
        hints.append(f"activation spans only {span:.3g} ms")
    elif span > PLAUSIBLE_SPAN_MS[1]:
        hints.append(f"activation spans {span:.3g} ms")
    if hints:
        what = (
            "velocity is in mm/ms"
            if velocity_given
            else "D is in mm^2/ms^2 (velocity squared; or pass velocity=)"
        )
        warnings.warn(
            "; ".join(hints) + f"; physim.eikonal works in mm and ms, so {what}",
            UnitsWarning,
            stacklevel=3,
        )


def _velocity_to_D(mesh, velocity):
    """Isotropic conduction tensors v^2 I from a speed (mm/ms): a scalar or one value per element."""
    v = as_float_array("velocity", velocity)
    if v.ndim == 0 or v.size == 1:
        v = np.full(mesh.n_cells, float(v.reshape(-1)[0]))
    elif v.shape != (mesh.n_cells,):
        raise ShapeError(
            f"velocity must be a scalar or have one value per element, shape ({mesh.n_cells},), got {v.shape}"
        )
    bad = np.nonzero(~(v > 0))[0]
    if bad.size:
        raise InvalidInputError(
            f"velocity must be positive (mm/ms), got {v[bad[0]]} at element {int(bad[0])}"
        )
    with np.errstate(over="ignore"):
        over = np.nonzero(~np.isfinite(v * v))[0]
    if over.size:
        raise InvalidInputError(
            f"velocity {v[over[0]]:g} mm/ms at element {int(over[0])}: its square overflows float64"
        )
    return (v * v)[:, None, None] * np.eye(mesh.dim)


@dataclass(frozen=True, eq=False)
class Activation(Result):
    """Result of :func:`solve` (read-only arrays).

    Attributes
    ----------
    times : ndarray, shape (n_points,), float64
        Activation times in ms; ``inf`` where unreached.
    mesh : TetMesh or TriMesh
        The mesh solved on.
    D : ndarray, shape (n_cells, dim, dim), float64
        Conduction tensors used (mm²/ms²).
    sources : ndarray
        Node indices (n_sources,) int64 when ``source_kind == "nodes"``, else
        points (n_sources, dim) float64 in mm.
    source_kind : {"nodes", "points"}
    source_times : ndarray, shape (n_sources,), float64
        Initiation times in ms.
    source_elements : ndarray, shape (n_sources,), int64
        Element containing each point source (-1 for node sources).
    source_positions : ndarray, shape (n_sources, dim), float64
        Position of every source (the node coordinates for node sources).
    source_D : ndarray, shape (n_sources, dim, dim), float64
        Locally constant tensor used to initialise around each source: the
        containing element's ``D`` for point sources, the mean over the
        incident elements for node sources.
    init_radius : float
        Radius (mm) of the exact initialisation around each source.
    source_of : ndarray, shape (n_points,), int64
        Source whose exact initialisation gave the node its final time (-1 if none).
    upwind_element : ndarray, shape (n_points,), int64
        Element whose local update gave the final time (-1 for source-initialised
        and unreached nodes).
    update_code : ndarray, shape (n_points,), int64
        Local update that won: bit ``j`` (j < 4) marks local vertex ``j`` of
        ``upwind_element`` as upwind support; ``code >> 4`` is the node's own local index.
    metric_edges : ndarray, shape (n_cells, n_edges), float64
        Squared edge lengths in the metric ``D⁻¹`` (mm² · ms²/mm²).
    n_unreached : int
        Number of points with infinite time (including points used by no element).
    visits : int
        Active-list visits of the fast iterative method (cost measure).
    tol : float
        Re-activation tolerance used (ms).
    """

    times: np.ndarray
    mesh: SimplexMesh
    D: np.ndarray
    sources: np.ndarray
    source_kind: str
    source_times: np.ndarray
    source_elements: np.ndarray
    source_positions: np.ndarray
    source_D: np.ndarray
    init_radius: float
    source_of: np.ndarray
    upwind_element: np.ndarray
    update_code: np.ndarray
    metric_edges: np.ndarray
    n_unreached: int
    visits: int
    tol: float

    def __repr__(self) -> str:
        fin = self.times[np.isfinite(self.times)]
        rng = f"{fin.min():.4g}..{fin.max():.4g} ms" if fin.size else "none reached"
        return (
            f"Activation(n_points={self.times.size}, times {rng}, {self.source_times.size} "
            f"{self.source_kind[:-1]} source(s), n_unreached={self.n_unreached}, visits={self.visits})"
        )

    @property
    def update_kind(self) -> np.ndarray:
        """(n_points,) int: 3 tet, 2 face (triangle), 1 edge update; 0 source-initialised; -1 unreached."""
        mask = self.update_code & 15
        nsup = ((mask >> 0) & 1) + ((mask >> 1) & 1) + ((mask >> 2) & 1) + ((mask >> 3) & 1)
        out = np.where(self.upwind_element >= 0, nsup, 0)
        out[~np.isfinite(self.times)] = -1
        return out

    @property
    def total_activation_time(self) -> float:
        """max − min of the finite times, ms."""
        t = self.times[np.isfinite(self.times)]
        return float(t.max() - t.min())


def prepare_D(mesh: SimplexMesh, D: ArrayLike) -> np.ndarray:
    """Validate ``D`` and broadcast it to (n_cells, dim, dim) float64.

    ``D`` may be a positive scalar (isotropic, ``D = D·I``; so ``v²`` for speed
    ``v``), one (dim, dim) tensor for all elements, or (n_cells, dim, dim).
    Raises :class:`~physim.errors.InvalidInputError` for non-symmetric or
    non-positive-definite tensors, naming the first offending element.
    """
    dim, m = mesh.dim, mesh.n_cells
    scalar = np.ndim(D) == 0
    a = as_float_array("D", D)
    if scalar:
        v = float(a.reshape(-1)[0])
        if v <= 0:
            raise InvalidInputError(f"D must be positive (isotropic squared velocity), got {v}")
        if v < np.finfo(np.float64).tiny:
            raise InvalidInputError(f"D = {v:g} is subnormal: the travel-time metric 1/D overflows float64")
        return np.ascontiguousarray(np.broadcast_to(v * np.eye(dim), (m, dim, dim)))
    if a.shape == (dim, dim):
        check_spd("D", a)
        return np.ascontiguousarray(np.broadcast_to(a, (m, dim, dim)))
    if a.shape != (m, dim, dim):
        raise ShapeError(f"D must be a scalar, ({dim}, {dim}) or ({m}, {dim}, {dim}), got {a.shape}")
    return a  # symmetry and definiteness are checked by the Cholesky in F.element_geometry


def _element_geometry(mesh, Dm):
    """(kmat, d2) of every element for ``Dm`` (see :mod:`physim.eikonal._fim`)."""
    m = mesh.n_cells
    kmat = np.empty((m, 10 if mesh.nodes_per_cell == 4 else 3))
    d2 = np.empty((m, mesh.edges.shape[0]))
    bad = F.element_geometry(mesh.points, mesh.cells, Dm, mesh.edges, kmat, d2, 1e-13)
    if not bad.any():
        return kmat, d2
    not_spd = np.flatnonzero(bad == 1)
    if not_spd.size:
        e = int(not_spd[0])
        # word the error with the eigenvalue check (the kernel only detects)
        check_spd(f"D[{e}]", Dm[e])
        raise InvalidInputError(f"D[{e}] is not numerically positive definite: {Dm[e].tolist()}")
    for code, what in ((2, "small"), (3, "large")):
        over = np.flatnonzero(bad == code)
        if over.size:
            e = int(over[0])
            raise InvalidInputError(
                f"D[{e}] is too {what} for the mesh ({over.size} element(s)): the travel-time "
                f"metric of its edges overflows float64 (D[{e}] = {Dm[e].tolist()})"
            )
    return kmat, d2


def _anisotropy(D):
    """sqrt(λmax / λmin) of symmetric (k, d, d) tensors, d = 2 or 3 in closed form (inf if λmin <= 0)."""
    d = D.shape[1]
    if d == 2:
        m = 0.5 * (D[:, 0, 0] + D[:, 1, 1])
        r = np.hypot(0.5 * (D[:, 0, 0] - D[:, 1, 1]), D[:, 0, 1])
        lo, hi = m - r, m + r
    elif d == 3:
        # trigonometric solution of the characteristic cubic of a symmetric 3x3 matrix
        q = np.trace(D, axis1=1, axis2=2) / 3.0
        p1 = D[:, 0, 1] ** 2 + D[:, 0, 2] ** 2 + D[:, 1, 2] ** 2
        p2 = (D[:, 0, 0] - q) ** 2 + (D[:, 1, 1] - q) ** 2 + (D[:, 2, 2] - q) ** 2 + 2.0 * p1
        p = np.sqrt(p2 / 6.0)
        a, b, c = D[:, 0, 0] - q, D[:, 1, 1] - q, D[:, 2, 2] - q
        x, y, z = D[:, 0, 1], D[:, 0, 2], D[:, 1, 2]
        det = a * (b * c - z * z) - x * (x * c - z * y) + y * (x * z - b * y)  # det(D - qI)
        pp = np.where(p > 0, p, 1.0)
        phi = np.arccos(np.clip(0.5 * det / (pp * pp * pp), -1.0, 1.0)) / 3.0
        hi = q + 2.0 * p * np.cos(phi)
        lo = q + 2.0 * p * np.cos(phi + 2.0 * np.pi / 3.0)
    else:  # pragma: no cover - meshes are 2-D or 3-D
        lam = np.linalg.eigvalsh(D)
        lo, hi = lam[:, 0], lam[:, -1]
    ok = lo > 0
    return np.where(ok, np.sqrt(np.where(ok, hi, 1.0) / np.where(ok, lo, 1.0)), np.inf)


def _visit_cap(Dm):
    """Visit cap for the conduction ``Dm`` (n_cells, dim, dim): ``_CAP_MILD`` when the median
    anisotropy sqrt(λmax / λmin) of (at most 1024 sampled) elements is at most ``_MILD``, else ``_CAP``.

    Measured on the 10k / 65k hearts (one source; visits per node with cap 3 -> 20): fibre / cross
    ratio 2.5: 1.41 -> 1.08 / 1.45 -> 1.27; ratio 5: 2.96 -> 1.68 / 2.75 -> 2.49; ratio 6: 3.34 -> 2.68
    / 3.19 -> 3.51; ratio 10: 4.76 -> 7.88 / 4.65 -> 7.82. With the benchmark's sources the 65k heart is
    better off up to ratio 3 (1.79 -> 1.48 at 2.5; 3.60 -> 4.22 at 5), the benchmark's cube (random
    fibres) up to 3.5 (2.69 -> 1.31 at 2.5, 3.25 -> 2.33 at 3.5); hence ``_MILD`` = 3.5.
    """
    m = Dm.shape[0]
    if m == 0:
        return _CAP
    return _CAP_MILD if float(np.median(_anisotropy(Dm[:: max(1, m // 1024)]))) <= _MILD else _CAP


def _fixed_point(mesh, phi, kmat, d2, tol, max_visits, ordered, cap=_CAP):
    """Fast iterative method with bounded work, and Newton steps on the recorded policy.

    Returns (rec_elem, rec_code, visits, policy_evaluations); ``phi`` is updated in place.

    On meshes that are obtuse in the metric (strong anisotropy) some updates
    are non-causal and form cycles whose times converge only geometrically
    under the fast iterative method, every small drop cascading downstream.
    So a node visited ``cap`` times (``_CAP_NEWTON`` after a policy
    evaluation) is re-activated only for drops above ``_BIG`` typical metric
    heights; smaller drops are left pending. When the active list is empty
    and drops are pending, every reached node is re-solved with its recorded
    update held fixed (a policy evaluation: a Newton step of the fixed point,
    a few flops per node, converging quadratically) and the changed and
    pending nodes are propagated again with fresh visit budgets. Every step
    keeps the times above the discrete solution and decreasing, and the loop
    ends when no drop above ``tol`` is pending: the same fixed point as the
    plain method, with bounded work.
    """
    n = mesh.n_points
    nv = mesh.nodes_per_cell
    init = phi.copy()
    rec_elem = np.full(n, -1, dtype=np.int64)
    rec_code = np.full(n, -1, dtype=np.int64)
    queue = np.empty(n, dtype=np.int64)
    pos = np.full(n, -1, dtype=np.int64)
    state = np.zeros(4, dtype=np.int64)
    cnt = np.zeros(n, dtype=np.int64)
    pending = np.zeros(n)
    visited = np.empty(n, dtype=np.int64)
    ptr, inc = mesh.node_cell_ptr, mesh._incidence()
    propagate = F.propagate_tet if nv == 4 else F.propagate_tri
    # a typical metric height (the time a wave needs to cross one element)
    sample = kmat[:: max(1, mesh.n_cells // 4096), :nv]
    height = 1.0 / np.sqrt(np.median(sample))
    big = _BIG * height
    band = _BAND * height
    batch = _BATCH
    slots = batch * int(np.diff(ptr).max()) * (nv - 1)
    work = (np.empty(batch, dtype=np.int64), np.empty(batch, dtype=np.int64), np.empty(batch, dtype=np.int64),
            np.empty(slots, dtype=np.int64), np.empty(slots), np.empty(slots, dtype=np.int64),
            np.empty(slots, dtype=np.int64))  # fmt: skip
    F.activate(phi, queue, pos, state, np.flatnonzero(np.isfinite(phi)), ordered)
    visits = 0
    evaluations = 0
    while True:
        v = propagate(
            phi,
            rec_elem,
            rec_code,
            mesh.cells,
            kmat,
            d2,
            ptr,
            inc,
            queue,
            pos,
            state,
            tol,
            ordered,
            cap if evaluations == 0 else _CAP_NEWTON,
            big,
            cnt,
            pending,
            visited,
            max_visits - visits,
            band,
            batch,
            *work,
            numba.get_num_threads(),
        )
        visits += abs(v)
        if v < 0:
            raise ConvergenceError(
                f"fast iterative method exceeded max_visits={max_visits} active-list visits"
            )
        if state[3] == 0:
            return rec_elem, rec_code, visits, evaluations
        vis = visited[: state[2]]
        pend = vis[pending[vis] > max(tol, _ROUNDOFF * float(phi[vis].max()))]
        cnt[vis] = 0
        pending[vis] = 0.0
        state[2] = 0
        state[3] = 0
        if pend.size == 0:
            return rec_elem, rec_code, visits, evaluations
        evaluations += 1
        nodes = np.flatnonzero(np.isfinite(phi))
        local = np.full(n, -1, dtype=np.int64)
        changed = np.empty(nodes.size, dtype=np.int64)
        w = np.empty((n, nv))
        s = np.empty(n)
        K.node_weights(phi, rec_elem, rec_code, mesh.cells, d2, mesh.pair_index, w, s)
        nc = G.evaluate_policy(
            phi,
            init,
            rec_elem,
            rec_code,
            mesh.cells,
            d2,
            mesh.pair_index,
            nodes,
            local,
            w,
            s,
            _POLICY_SWEEPS,
            tol,
            changed,
        )
        F.activate(phi, queue, pos, state, np.concatenate([changed[:nc], pend]), ordered)


def _metric_norm(Dk, r):
    """|r|_{D⁻¹} for rows of r (q, dim), by a linear solve (no inverse)."""
    if r.shape[0] == 0:
        return np.zeros(0)
    w = np.linalg.solve(Dk, r.T).T
    return np.sqrt(np.maximum(np.einsum("ij,ij->i", r, w), 0.0))


def _parse_sources(mesh, sources):
    if isinstance(sources, (int, np.integer)) and not isinstance(sources, bool):
        sources = [sources]
    a = np.asarray(sources)
    if a.dtype == object:
        raise InvalidTypeError("sources must be node indices (n_sources,) or points (n_sources, dim)")
    if a.size == 0:
        raise InvalidInputError("sources is empty: give at least one node index or point")
    if a.dtype.kind in "iu":
        idx = as_index_array(
            "sources", a.reshape(-1) if a.ndim == 0 else a, upper=mesh.n_points, shape=(None,)
        )
        unused = np.nonzero(~mesh.used[idx])[0]
        if unused.size:
            k = int(unused[0])
            raise InvalidInputError(
                f"source node {int(idx[k])} (sources[{k}]) belongs to no element of the mesh"
            )
        return "nodes", idx
    if a.dtype.kind == "f":
        d = mesh.dim
        integral = a.ndim <= 1 and bool(np.all(np.isfinite(a)) and np.all(a == np.round(a)))
        # a 1-D float array of integer values is ambiguous (node indices? one point?): never guess
        one_point = a.ndim == 1 and a.size == d and not integral
        if not (one_point or (a.ndim == 2 and a.shape[1] == d)):
            hint = ""
            if integral:
                hint = f"; for node indices pass integers, e.g. sources={np.asarray(a, dtype=np.int64).reshape(-1).tolist()}"
                if a.size == d:
                    hint += f", for one point pass [{a.tolist()}]"
            raise ShapeError(
                f"sources must be integer node indices, shape (n,), or points in mm, shape (n, {d}); "
                f"got floats of shape {a.shape}{hint}"
            )
        pts = as_float_array("sources", a.reshape(1, -1) if a.ndim == 1 else a, shape=(None, d))
        return "points", pts
    raise InvalidTypeError(f"sources must be integer node indices or float points, got dtype {a.dtype}")


def solve(
    mesh: SimplexMesh,
    D: ArrayLike | None = None,
    sources: ArrayLike | None = None,
    source_times: ArrayLike = 0.0,
    *,
    velocity: ArrayLike | None = None,
    tol: float = 1e-8,
    init_radius: float = 0.0,
    max_visits: int | None = None,
    active_list: str = "heap",
) -> Activation:
    """Activation times of the anisotropic eikonal equation ``sqrt(∇φᵀ D ∇φ) = 1``.

    Parameters
    ----------
    mesh : TetMesh or TriMesh
        The mesh (mm).
    D : float or array_like, shape (dim, dim) or (n_cells, dim, dim)
        Symmetric positive definite conduction tensors, mm²/ms² (``v²`` for an
        isotropic speed ``v`` in mm/ms); see :func:`conduction_tensor`.
        Give either ``D`` or ``velocity``.
    sources : int array_like (n_sources,) or float array_like (n_sources, dim)
        Node indices, or points (mm) inside the mesh (their containing element's
        vertices are initialised exactly).
    source_times : float or array_like (n_sources,)
        Initiation time of each source, ms.
    velocity : float or array_like (n_cells,), optional
        Isotropic conduction velocity in mm/ms (= m/s), instead of ``D``
        (``D = velocity² I``); e.g. ``solve(mesh, velocity=0.6, sources=[0])``.
    tol : float
        A node whose time drops by at most ``tol`` (ms) is not re-activated,
        so the result is the discrete fixed point up to about ``tol`` (the
        adjoint is exact for the recorded updates); 0 gives the exact fixed
        point to round-off. At strong anisotropy (non-causal updates) the
        work stays bounded at any ``tol``: slowly converging cycles are
        resolved by Newton steps on the recorded updates (see ``_fixed_point``).
    init_radius : float
        Initialise every node within this distance (mm) of a source exactly,
        assuming ``D`` locally constant (``source_D``). 0 disables it.
    max_visits : int, optional
        Safety cap on active-list visits (default ``1000 * n_points``; a few
        per node are used at any anisotropy).
    active_list : {"heap", "fifo"}
        Order of the active list: ``"heap"`` (by current time; fewest visits) or
        ``"fifo"`` (the classic FIM sweep). Both give the same discrete solution.
        Either list is processed in batches (from the heap: near-simultaneous
        nodes) whose visits run in parallel on Numba's threads
        (``numba.set_num_threads``); the batches do not depend on the thread
        count, so every count gives the same result bit for bit.

    Returns
    -------
    Activation

    Raises
    ------
    InvalidInputError
        Empty sources, source nodes out of range or unused, points outside the
        mesh, non-SPD ``D``, bad ``source_times``.
    ConvergenceError
        If ``max_visits`` is exceeded.

    Warns
    -----
    UnreachedPointsWarning
        When points used by elements are not reached (disconnected from every source).
    UnitsWarning
        When the mesh extent or the activation times are implausible in mm / ms
        (e.g. a mesh in metres).
    """
    if not isinstance(mesh, SimplexMesh):
        raise InvalidTypeError(f"mesh must be a TetMesh or TriMesh, got {type(mesh).__name__}")
    if velocity is not None and D is not None:
        raise InvalidInputError("give either D (mm^2/ms^2) or velocity (mm/ms), not both")
    if velocity is None and D is None:
        raise InvalidInputError("give the conduction: D (mm^2/ms^2 tensors) or velocity= (mm/ms)")
    if sources is None:
        raise InvalidInputError("sources is required: node indices (n,) or points (n, dim) in mm")
    Dm = prepare_D(mesh, D) if velocity is None else _velocity_to_D(mesh, velocity)
    kind, src = _parse_sources(mesh, sources)
    k = src.shape[0]
    scalar_t = np.ndim(source_times) == 0
    st = as_float_array("source_times", source_times)
    if scalar_t:
        st = np.full(k, float(st.reshape(-1)[0]))
    elif st.shape != (k,):
        raise ShapeError(f"source_times must be a scalar or have shape ({k},), got {st.shape}")
    tol = as_scalar("tol", tol, nonnegative=True)
    if active_list not in ("heap", "fifo"):
        raise InvalidInputError(f"active_list must be 'heap' or 'fifo', got {active_list!r}")
    init_radius = as_scalar("init_radius", init_radius, nonnegative=True)
    n = mesh.n_points
    max_visits = 1000 * n + 1000 if max_visits is None else as_int("max_visits", max_visits, lower=1)
    # a radius beyond the mesh's extent initialises the same nodes (and keeps its square finite)
    extent = float(np.ptp(mesh.points, axis=0).max()) if n else 0.0
    r_init = min(init_radius, 2.0 * extent + 1.0)

    pts = mesh.points
    if kind == "nodes":
        positions = pts[src]
        elems = np.full(k, -1, dtype=np.int64)
        ptr = mesh.node_cell_ptr
        cnt = (ptr[src + 1] - ptr[src]).astype(np.int64)
        if k and np.all(cnt > 0):
            # mean of D over the cells incident to each source node, without a loop over sources
            first = np.cumsum(cnt) - cnt
            idx = mesh.node_cells[
                np.repeat(ptr[src], cnt) + (np.arange(int(cnt.sum())) - np.repeat(first, cnt))
            ]
            sD = np.add.reduceat(Dm[idx], first, axis=0) / cnt[:, None, None]
        else:
            sD = np.empty((k, mesh.dim, mesh.dim))
            for s, node in enumerate(src):
                sD[s] = Dm[mesh.node_cells[ptr[node] : ptr[node + 1]]].mean(axis=0)
    else:
        positions = src
        elems, _ = mesh.locate(src)
        out = np.nonzero(elems < 0)[0]
        if out.size:
            s = int(out[0])
            raise InvalidInputError(
                f"source point {s} at {src[s].tolist()} lies outside the mesh ({out.size} such point(s))"
            )
        sD = Dm[elems]

    phi = np.full(n, np.inf)
    source_of = np.full(n, -1, dtype=np.int64)
    used = mesh.used
    if kind == "nodes" and init_radius == 0 and k:
        # each source sets only its own node: the earliest source of a node wins (ties: the first)
        order = np.lexsort((np.arange(k), st))
        _, first_of_node = np.unique(src[order], return_index=True)
        win = order[first_of_node]
        phi[src[win]] = st[win]
        source_of[src[win]] = win
        k_loop = 0
    else:
        k_loop = k
    for s in range(k_loop):
        p = positions[s]
        cand = []
        if kind == "nodes":
            cand.append(np.array([src[s]]))
        else:
            cand.append(mesh.cells[elems[s]])
        if init_radius > 0:
            near = np.nonzero(used & (((pts - p) ** 2).sum(1) <= r_init**2))[0]
            cand.append(near)
        nodes = np.unique(np.concatenate(cand))
        vals = st[s] + _metric_norm(sD[s], pts[nodes] - p)
        if kind == "nodes":
            vals[nodes == src[s]] = st[s]
        better = vals < phi[nodes]
        phi[nodes[better]] = vals[better]
        source_of[nodes[better]] = s

    kmat, d2 = _element_geometry(mesh, Dm)
    rec_elem, rec_code, visits, _ = _fixed_point(
        mesh, phi, kmat, d2, tol, int(max_visits), active_list == "heap", _visit_cap(Dm)
    )
    source_of[rec_elem >= 0] = -1

    unreached = ~np.isfinite(phi)
    n_unreached = int(unreached.sum())
    n_bad = int((unreached & used).sum())
    if n_bad:
        warnings.warn(
            f"{n_bad} of {n} mesh points were not reached by any source (not connected to a source); "
            f"their activation time is inf",
            UnreachedPointsWarning,
            stacklevel=2,
        )
    _check_units(mesh, phi, velocity is not None)
    src = src.copy()
    st = st.copy()
    positions = np.array(positions, dtype=np.float64, order="C")
    if D is not None and np.may_share_memory(Dm, D):
        Dm = Dm.copy()  # never freeze the caller's array
    for a in (phi, source_of, rec_elem, rec_code, d2, src, st, elems, positions, sD, Dm):
        a.flags.writeable = False
    return Activation(
        times=phi,
        mesh=mesh,
        D=Dm,
        sources=src,
        source_kind=kind,
        source_times=st,
        source_elements=elems,
        source_positions=positions,
        source_D=sD,
        init_radius=init_radius,
        source_of=source_of,
        upwind_element=rec_elem,
        update_code=rec_code,
        metric_edges=d2,
        n_unreached=n_unreached,
        visits=int(visits),
        tol=tol,
    )
