r"""Adjoint (vector-Jacobian product) of :func:`physim.eikonal.solve`.

Derivation
----------
At the discrete solution every reached node ``i`` takes its time from exactly
one recorded source (``Activation.source_of``) or one recorded local update
(``upwind_element`` ``e`` and ``update_code``: the target's local vertex ``a``
and the upwind support ``S`` — 3 vertices for the tet update, 2 for a face,
1 for an edge)::

    φ_i = t_k + |x_i − p_k|_{D_k⁻¹}                       (source-initialised)
    φ_i = U(φ_S, d_e) = min_{λ∈Δ_S} Σ_j λ_j φ_j + s(λ),   s(λ)² = λᵀ G λ,

where ``d_e`` are the squared metric edge lengths ``d_pq = v_pqᵀ D_e⁻¹ v_pq`` and
``G_jk = (d_aj + d_ak − d_jk)/2``, so that
``s² = Σ_j λ_j d_aj − Σ_{j<k} λ_j λ_k d_jk`` on the simplex. The minimiser λ*
is a stationary point on the support face (Lagrange), so by the envelope
theorem the derivatives of U are the partial derivatives at fixed λ*::

    ∂U/∂φ_j = λ*_j,   ∂U/∂d_aj = λ*_j / (2s),   ∂U/∂d_jk = −λ*_j λ*_k / (2s),
    ∂d_pq/∂D_e = −w wᵀ,  w = D_e⁻¹ v_pq.

Writing the forward as ``φ = F(φ, θ)`` with ``∂F/∂φ`` supported on the
recorded upwind graph (acyclic as long as the updates are causal), the adjoint ``λ̄ = (I − ∂F/∂φ)⁻ᵀ
dL/dφ`` is obtained by one reverse sweep: visiting each node after all nodes
that depend on it (reverse topological order of the upwind graph —
decreasing arrival time whenever the updates are causal, i.e. ``φ_j ≤ φ_i``
on the support; see below for cycles), ``λ̄_j += λ̄_i λ*_j`` and ``d̄_e += λ̄_i ∂U/∂d_e``. Finally
``D̄_e = −Σ_pq d̄_pq w_pq w_pqᵀ`` and, for the source-initialised nodes with
``r = x_i − p_k``, ``q = |r|_{D_k⁻¹}``, ``w = D_k⁻¹ r``::

    t̄_k += λ̄_i,   p̄_k −= λ̄_i w / q,   D̄_k −= λ̄_i w wᵀ / (2q).

``D_k`` is the containing element's tensor for point sources, and the mean
over the incident elements for node sources (its gradient is shared equally).
The cost is one local update per node plus one small solve per element edge:
less than a forward solve, which evaluates many local updates per node.

Ties and kinks
--------------
The discrete solution is only piecewise smooth; the adjoint returns the
derivative of the branch that was recorded, i.e. a one-sided derivative:

* two elements (or a source and an element, or two sources) giving the same
  time: the one recorded first in the forward sweep wins (the update must be
  strictly smaller to replace a record);
* the minimiser on the boundary of the support face (some λ*_j = 0): the
  smaller support was recorded; its derivative equals the larger support's,
  because the envelope derivatives are continuous across that boundary
  (λ*_j = 0 contributes nothing);
* a point source exactly on a node (``r = 0``): the distance is not
  differentiable there and that node contributes no position/``D`` gradient;
* a point source moving across an element boundary changes the initialised
  element, a genuine kink; the gradient is that of the current element.

Non-causal updates (a support vertex later than the target, possible on
elements that are obtuse in the metric, e.g. with anisotropic ``D``) can
create dependency cycles in the recorded graph. The sweep therefore visits
the strongly connected components of the upwind graph (Tarjan, O(n)) in
reverse topological order; a component ``C`` with several nodes solves its
coupled system ``(I − J_CCᵀ) λ̄_C = b_C`` (``b_C``: contributions gathered
from downstream) — the implicit-function derivative of the fixed point —
before pushing to its upwind nodes. ``J_CC`` has at most three entries per
row and is substochastic, so ``I − J_CCᵀ`` is a nonsingular M-matrix: it is
solved by Gauss–Seidel sweeps in decreasing arrival time to round-off, with
memory linear in the component size (at strong anisotropy a component can
hold thousands of nodes); a component whose sweeps converge too slowly is
factorised by a sparse LU instead. ``n_cyclic`` counts the nodes on such cycles.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sps
import scipy.sparse.linalg as spla
from numpy.typing import ArrayLike

from .._result import Result, freeze
from .._validate import as_float_array
from ..errors import InvalidTypeError, NonFiniteError
from . import _graph as G
from . import _kernels as K
from .solve import Activation

#: Gauss–Seidel sweeps of a cyclic component before it is solved by a sparse LU instead
_MAX_SWEEPS = 2000

__all__ = ["EikonalGradient", "adjoint"]


@dataclass(frozen=True, eq=False)
class EikonalGradient(Result):
    """Gradients of a loss L(times) returned by :func:`adjoint`.

    Attributes
    ----------
    D : ndarray, shape (n_cells, dim, dim), float64
        dL/dD (symmetric), per unit of mm²/ms².
    source_times : ndarray, shape (n_sources,), float64
        dL/dt_k, per ms.
    source_points : ndarray, shape (n_sources, dim), float64, or None
        dL/dp_k for point sources (per mm); None for node sources.
    times : ndarray, shape (n_points,), float64
        The adjoint variable of every node (total dL/dφ_i including downstream
        dependence; 0 at unreached nodes).
    n_cyclic : int
        Nodes on a dependency cycle of non-causal updates (none with isotropic
        ``D`` on well-shaped meshes, many at strong anisotropy), see the module notes.
    """

    D: np.ndarray
    source_times: np.ndarray
    source_points: np.ndarray | None
    times: np.ndarray
    n_cyclic: int

    def __repr__(self) -> str:
        return (
            f"EikonalGradient(D: {self.D.shape}, |dD|max={np.abs(self.D).max():.3g}, "
            f"source_times={np.array2string(self.source_times, precision=4, threshold=6)}, "
            f"source_points={'None' if self.source_points is None else self.source_points.shape}, "
            f"n_cyclic={self.n_cyclic})"
        )


def _reverse_sweep(act, lam):
    """λ̄ = (I − Λ)⁻ᵀ lam in place and dL/dd2, through the components of the upwind graph."""
    mesh = act.mesh
    n, nv = mesh.n_points, mesh.nodes_per_cell
    w = np.empty((n, nv))
    s = np.empty(n)
    cells, pair = mesh.cells, mesh.pair_index
    phi, rec_elem, rec_code = act.times, act.upwind_element, act.update_code
    K.node_weights(phi, rec_elem, rec_code, cells, act.metric_edges, pair, w, s)
    g = np.zeros_like(act.metric_edges)
    order, comp_ptr = G.upwind_components(phi, rec_elem, rec_code, cells)
    c = comp_ptr.size - 2
    n_cyclic = 0
    while c >= 0:
        c, nc, _ = G.adjoint_sweep(
            order, comp_ptr, phi, rec_elem, rec_code, cells, w, s, pair, lam, g, c, _MAX_SWEEPS
        )
        n_cyclic += nc
        if c < 0:
            break
        # a slowly converging cyclic component: sparse LU of (I − Λ_CC)ᵀ (memory ~ its fill)
        members = order[comp_ptr[c] : comp_ptr[c + 1]]
        r, q, v = G.component_matrix(members, rec_elem, cells, w, n)
        k = members.size
        A = sps.csc_matrix((v, (q, r)), shape=(k, k))  # transposed
        lam[members] = spla.splu(A).solve(lam[members])
        G.push_component(members, rec_elem, rec_code, cells, w, s, pair, lam, g, n)
        c -= 1
    return g, n_cyclic


def adjoint(activation: Activation, d_loss_d_times: ArrayLike) -> EikonalGradient:
    """Vector-Jacobian product of :func:`solve`: pull dL/dtimes back to D and the sources.

    Parameters
    ----------
    activation : Activation
        Result of :func:`solve` (its records are used; the forward is not re-run).
    d_loss_d_times : array_like, shape (n_points,), float
        dL/dφ (per ms). Entries at unreached points are ignored (may be 0, inf or NaN);
        entries at reached points must be finite.

    Returns
    -------
    EikonalGradient
    """
    if not isinstance(activation, Activation):
        raise InvalidTypeError(
            f"activation must be an Activation from solve(), got {type(activation).__name__}"
        )
    act = activation
    mesh = act.mesh
    n = mesh.n_points
    g = as_float_array("d_loss_d_times", d_loss_d_times, shape=(n,), finite=False)
    reached = np.isfinite(act.times)
    bad = reached & ~np.isfinite(g)
    if bad.any():
        i = int(np.argmax(bad))
        raise NonFiniteError(f"d_loss_d_times[{i}] = {g[i]!r} is not finite at a reached point")
    lam = np.where(reached, g, 0.0)
    g_d2, n_cyclic = _reverse_sweep(act, lam)
    dD = K.d2_grad_to_D(mesh.edge_vectors, act.D, g_d2)

    # sources
    k = act.source_times.shape[0]
    dim = mesh.dim
    d_t = np.zeros(k)
    d_p = np.zeros((k, dim))
    d_Dk = np.zeros((k, dim, dim))
    nodes = np.nonzero((act.source_of >= 0) & (lam != 0.0))[0]
    if nodes.size:
        s_of = act.source_of[nodes]
        np.add.at(d_t, s_of, lam[nodes])
        r = mesh.points[nodes] - act.source_positions[s_of]
        w = np.linalg.solve(act.source_D[s_of], r[..., None])[..., 0]
        q = np.sqrt(np.maximum(np.einsum("ij,ij->i", r, w), 0.0))
        nz = q > 0
        if nz.any():
            c = lam[nodes][nz]
            np.add.at(d_p, s_of[nz], -(c / q[nz])[:, None] * w[nz])
            np.add.at(
                d_Dk, s_of[nz], -(c / (2 * q[nz]))[:, None, None] * w[nz][:, :, None] * w[nz][:, None, :]
            )
    if act.source_kind == "points":
        np.add.at(dD, act.source_elements, d_Dk)
        d_points = d_p
    else:
        for s in range(k):
            if not d_Dk[s].any():
                continue
            node = act.sources[s]
            inc = mesh.node_cells[mesh.node_cell_ptr[node] : mesh.node_cell_ptr[node + 1]]
            dD[inc] += d_Dk[s] / inc.size
        d_points = None
    freeze(dD, d_t, lam, *(() if d_points is None else (d_points,)))  # all created here: no copies
    return EikonalGradient(D=dD, source_times=d_t, source_points=d_points, times=lam, n_cyclic=int(n_cyclic))
