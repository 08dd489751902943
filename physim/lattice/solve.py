"""Equilibrium of spring networks: linear (one sparse factorisation per batch)
and geometrically nonlinear (Newton with line search and load stepping).

Linear model (small displacements). With the compatibility matrix ``C``
(``e = C u``, row ``i`` = unit direction ``n_i`` of bond ``i`` with signs),
stiffnesses ``k`` (N/m) and rest lengths ``l0`` (m; default the reference
lengths ``lg``), the elastic elongation is ``e = C u + lg - l0``, the tension
``t = k e`` and equilibrium ``C^T t = f`` reads::

    K u = f + C^T diag(k) (l0 - lg),      K = C^T diag(k) C

restricted to the free dofs. ``K`` is assembled on a cached sparsity pattern
by a Numba kernel, factorised once (SuperLU in symmetric mode with a minimum
degree ordering on ``K + K^T``; a dense LAPACK Cholesky factorisation for
networks of at most ``DENSE_FACTOR_LIMIT`` free dofs, where it is several
times faster), and the factorisation is reused for every right-hand side of a
batch and for the adjoint solve.

Nonlinear model (``nonlinear=True``): energy ``sum_i k_i (l_i - l0_i)^2 / 2``
with the exact current lengths ``l_i = |x_b + u_b - x_a - u_a|``; residual
``R(u) = C(u)^T t(u) - f`` and tangent
``K_T = sum_i [k_i n n^T + (t_i / l_i)(I - n n^T)]`` with ``n`` the current
direction.

Floppy modes (zero-energy motions, ``C u = 0``) make ``K`` singular. Every
factorisation's pivots are checked against the diagonal; a vanishing relative
pivot triggers :func:`floppy_modes`, which computes the null space of ``C``
on the free dofs and the error names the number of modes and the nodes that
move in them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike
from scipy.sparse.linalg import splu

from .._result import Result
from .._validate import as_bool, as_float_array, as_int, as_scalar, check_positive
from ..errors import ConvergenceError, InvalidTypeError, NonFiniteError, ShapeError, SingularSystemError
from . import _kernels
from .network import SpringNetwork

__all__ = ["Equilibrium", "FloppyModes", "solve", "stiffness_matrix", "floppy_modes"]

#: relative pivot below which a factorisation is suspected singular
PIVOT_RTOL = 1e-10
#: relative eigenvalue of C^T C (unit stiffness) below which a mode counts as floppy
FLOPPY_RTOL = 1e-10
#: largest number of free dofs for the dense null-space computation
_DENSE_LIMIT = 2500
#: largest number of free dofs factorised by dense Cholesky (linear model) instead of SuperLU
DENSE_FACTOR_LIMIT = 150


# ---------------------------------------------------------------------------
# factorisation
# ---------------------------------------------------------------------------
class _Factor:
    """A sparse LU factorisation of a free-dof matrix, reused for many solves."""

    __slots__ = ("lu", "n")

    def __init__(self, lu, n: int):
        self.lu = lu
        self.n = n

    def solve(self, rhs: np.ndarray) -> np.ndarray:
        """Solve ``K x = rhs`` for rhs (n_free,) or (n_free, B).

        Columns are solved one at a time with the same factors: SuperLU's
        multi-right-hand-side triangular solve is several times slower per
        column than repeated single solves (measured 7x at 2e4 dofs).
        """
        rhs = np.asarray(rhs, dtype=np.float64)
        if self.n == 0:
            return np.zeros_like(rhs)
        if rhs.ndim == 1:
            return self.lu.solve(rhs)
        out = np.empty_like(rhs)
        for j in range(rhs.shape[1]):
            out[:, j] = self.lu.solve(np.ascontiguousarray(rhs[:, j]))
        return out


class _DenseFactor:
    """A dense Cholesky factorisation ``K = L L^T`` of a small SPD free-dof matrix."""

    __slots__ = ("cho", "n")

    def __init__(self, cho, n: int):
        self.cho = cho
        self.n = n

    def solve(self, rhs: np.ndarray) -> np.ndarray:
        """Solve ``K x = rhs`` for rhs (n_free,) or (n_free, B), all columns at once."""
        from scipy.linalg import cho_solve

        rhs = np.asarray(rhs, dtype=np.float64)
        return cho_solve(self.cho, rhs, check_finite=False)

    def relative_pivots(self, K) -> np.ndarray:
        """``L_jj^2 / K_jj``: the Cholesky pivots relative to the diagonal."""
        d = np.diag(self.cho[0]) ** 2
        kd = np.abs(K.diagonal())
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(kd > 0, d / kd, 0.0)


def _csc(network: SpringNetwork, data: np.ndarray) -> sp.csc_matrix:
    _, indices, indptr = network._pattern
    nf = network.n_free
    return sp.csc_matrix((data, indices, indptr), shape=(nf, nf))


def _dense(network: SpringNetwork, data: np.ndarray) -> np.ndarray:
    """The free-dof matrix with CSC ``data`` on the network's pattern, as a dense array."""
    idx = network.__dict__.get("_dense_index")
    nf = network.n_free
    if idx is None:
        _, indices, indptr = network._pattern
        cols = np.repeat(np.arange(nf, dtype=np.int64), np.diff(indptr))
        idx = indices.astype(np.int64) * nf + cols
        network.__dict__["_dense_index"] = idx
    K = np.zeros(nf * nf)
    K[idx] = data
    return K.reshape(nf, nf)


def stiffness_matrix(network: SpringNetwork, stiffness: ArrayLike) -> sp.csc_matrix:
    """The linear stiffness matrix ``K = C^T diag(k) C`` on the free dofs.

    Parameters
    ----------
    network : SpringNetwork
    stiffness : float or array_like, shape (m,)
        Bond stiffnesses (N/m), > 0.

    Returns
    -------
    scipy.sparse.csc_matrix, shape (n_free, n_free)
        Rows/columns follow ``network.free_dofs``.
    """
    _check_network(network)
    k = _check_stiffness(network, stiffness)
    return _csc(network, _assemble_linear(network, k))


def _assemble_linear(network: SpringNetwork, k: np.ndarray) -> np.ndarray:
    entry_map, indices, _ = network._pattern
    return _kernels.assemble(
        np.ascontiguousarray(network.directions), k, np.zeros_like(k), entry_map, indices.size
    )


def _factorize(K, *, symmetric_pd: bool):
    """SuperLU factorisation (raises RuntimeError if exactly singular).

    ``symmetric_pd``: no pivoting away from the diagonal (Cholesky-like fill on
    the symmetric minimum-degree ordering); otherwise a weak diagonal
    preference for symmetric indefinite tangents. ``K`` is a CSC matrix or,
    for small symmetric positive definite systems, a dense array (factorised
    by LAPACK Cholesky; SuperLU takes over if that fails).
    """
    n = K.shape[0]
    if n == 0:
        return _Factor(None, 0)
    if symmetric_pd and n <= DENSE_FACTOR_LIMIT:
        from scipy.linalg import LinAlgError, cho_factor

        try:
            cho = cho_factor(K if isinstance(K, np.ndarray) else K.toarray(), lower=True, check_finite=False)
            if np.all(np.isfinite(cho[0].diagonal())):
                return _DenseFactor(cho, n)
        except LinAlgError:
            pass  # singular or not numerically positive definite: SuperLU decides below
    if isinstance(K, np.ndarray):
        K = sp.csc_matrix(K)
    opts = {"SymmetricMode": True}
    lu = splu(
        K,
        permc_spec="MMD_AT_PLUS_A",
        diag_pivot_thresh=0.0 if symmetric_pd else 0.01,
        options=opts,
    )
    return _Factor(lu, n)


def _relative_pivots(f: _Factor, K: sp.csc_matrix) -> np.ndarray:
    """|U_jj| / |K_jj| in the factorisation's pivot order (1 for a diagonal K)."""
    if isinstance(f, _DenseFactor):
        return f.relative_pivots(K)
    lu = f.lu
    piv = np.abs(lu.U.diagonal())
    kd = np.empty(f.n)
    kd[lu.perm_c] = np.abs(K.diagonal())
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(kd > 0, piv / kd, 0.0)
    return rel


# ---------------------------------------------------------------------------
# floppy modes
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class FloppyModes(Result):
    """Zero-energy modes of a network (the null space of ``C`` on free dofs).

    Attributes
    ----------
    count : int
        Number of independent floppy modes.
    nodes : ndarray, int64 (r,)
        Nodes that move in at least one mode, sorted.
    modes : ndarray, float64 (count, n, d)
        An orthonormal basis of the modes as nodal displacement fields.
    """

    count: int
    nodes: np.ndarray
    modes: np.ndarray


def floppy_modes(network: SpringNetwork, *, rtol: float = FLOPPY_RTOL) -> FloppyModes:
    """Compute the floppy (zero-energy) modes of ``network``.

    The modes do not depend on the stiffnesses (all > 0): they are the null
    space of ``C^T C`` on the free dofs. Up to 2,500 free dofs a dense
    symmetric eigendecomposition is used; above that, shift-invert Lanczos
    (``scipy.sparse.linalg.eigsh``) requesting more eigenpairs until one is
    not floppy.

    Parameters
    ----------
    network : SpringNetwork
    rtol : float
        An eigenvalue of ``C^T C`` below ``rtol * max(diag(C^T C))`` is a floppy mode.

    Returns
    -------
    FloppyModes
    """
    _check_network(network)
    rtol = as_scalar("rtol", rtol, positive=True, upper=1.0)
    nf = network.n_free
    n, d = network.n_nodes, network.dim
    K = _csc(network, _assemble_linear(network, np.ones(network.n_bonds)))
    diag = K.diagonal()
    scale = float(diag.max()) if diag.size else 1.0
    if scale <= 0:
        scale = 1.0
    thr = rtol * scale
    if nf == 0:
        basis = np.zeros((0, 0))
    elif nf <= _DENSE_LIMIT:
        w, v = np.linalg.eigh(K.toarray())
        basis = v[:, w < thr]
    else:
        from scipy.sparse.linalg import eigsh

        sigma = -1e-6 * scale
        kreq = min(8, nf - 1)
        while True:
            w, v = eigsh(K, k=kreq, sigma=sigma, which="LM")
            if np.sum(w < thr) < kreq or kreq >= nf - 1 or kreq >= 512:
                break
            kreq = min(4 * kreq, nf - 1)
        basis = v[:, w < thr]
        if basis.shape[1] > 1:  # re-orthonormalise the (near-degenerate) Lanczos vectors
            basis, _ = np.linalg.qr(basis)
    r = basis.shape[1]
    modes = np.zeros((r, n * d))
    if r:
        modes[:, network.free_dofs] = basis.T
    modes = modes.reshape(r, n, d)
    weight = np.sqrt(np.einsum("rnd,rnd->n", modes, modes))
    nodes = np.flatnonzero(weight > 1e-6 * weight.max()) if r else np.zeros(0, dtype=np.int64)
    return FloppyModes(count=int(r), nodes=nodes.astype(np.int64), modes=modes)


def _floppy_error(network: SpringNetwork, fm: FloppyModes) -> SingularSystemError:
    shown = fm.nodes[:20].tolist()
    more = f" (and {fm.nodes.size - 20} more)" if fm.nodes.size > 20 else ""
    err = SingularSystemError(
        f"the stiffness matrix is singular: the network has {fm.count} floppy (zero-energy) "
        f"mode(s); {fm.nodes.size} node(s) move in them: {shown}{more}. Pin more dofs or add "
        f"bonds to make the network rigid."
    )
    err.n_modes = fm.count
    err.nodes = fm.nodes
    return err


def _linear_factor(network: SpringNetwork, k: np.ndarray, check: bool):
    """Assemble and factorise K (dense for small networks); check rigidity unless already known."""
    data = _assemble_linear(network, k)
    nf = network.n_free
    K = _dense(network, data) if 0 < nf <= DENSE_FACTOR_LIMIT else _csc(network, data)
    known_rigid = network.__dict__.get("_rigid", False)
    try:
        fac = _factorize(K, symmetric_pd=True)
    except RuntimeError:  # exactly singular
        fm = floppy_modes(network)
        if fm.count:
            raise _floppy_error(network, fm) from None
        raise SingularSystemError("the stiffness matrix is exactly singular") from None
    if check and not known_rigid and fac.n:
        rel = _relative_pivots(fac, K)
        if rel.min() < PIVOT_RTOL:
            fm = floppy_modes(network)
            if fm.count:
                raise _floppy_error(network, fm)
            warnings.warn(
                f"the stiffness matrix is ill-conditioned (smallest relative pivot {rel.min():.2e}) "
                "although the network has no floppy mode",
                RuntimeWarning,
                stacklevel=3,
            )
        network.__dict__["_rigid"] = True
    return K, fac


# ---------------------------------------------------------------------------
# result
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Equilibrium(Result):
    """Equilibrium state of a spring network, with what the adjoint needs.

    Attributes
    ----------
    network : SpringNetwork
    stiffness : ndarray, float64 (m,)
        Bond stiffnesses (N/m).
    rest_length : ndarray, float64 (m,)
        Rest lengths (m).
    forces : ndarray, float64 (n, d) or (B, n, d)
        Applied nodal forces (N); components on pinned dofs are ignored.
    displacements : ndarray, float64 (n, d) or (B, n, d)
        Nodal displacements (m); zero on pinned dofs.
    elongations : ndarray, float64 (m,) or (B, m)
        Elastic elongation of each bond (m): ``C u + lg - l0`` (linear) or
        ``l - l0`` (nonlinear).
    tensions : ndarray, float64 (m,) or (B, m)
        Bond tensions ``k * elongation`` (N), positive in tension.
    nonlinear : bool
        Whether the geometrically exact model was solved.
    iterations : ndarray, int64 (B,)
        Newton iterations per sample (0 for the linear model).
    residual_norm : ndarray, float64 (B,)
        Final Euclidean norm of the free-dof force residual (N).
    """

    network: SpringNetwork
    stiffness: np.ndarray
    rest_length: np.ndarray
    forces: np.ndarray
    displacements: np.ndarray
    elongations: np.ndarray
    tensions: np.ndarray
    nonlinear: bool
    iterations: np.ndarray
    residual_norm: np.ndarray
    _factors: tuple = field(repr=False, compare=False)
    _directions: np.ndarray = field(repr=False, compare=False)

    @property
    def batched(self) -> bool:
        """True if the forces had a leading batch axis."""
        return self.displacements.ndim == 3

    @property
    def batch_size(self) -> int:
        """Number of load cases ``B`` (1 if not batched)."""
        return int(self.displacements.shape[0]) if self.batched else 1


# ---------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------
def _check_network(network) -> None:
    if not isinstance(network, SpringNetwork):
        raise InvalidTypeError(f"network must be a SpringNetwork, got {type(network).__name__}")


def _check_stiffness(network: SpringNetwork, stiffness) -> np.ndarray:
    m = network.n_bonds
    k = as_float_array("stiffness", stiffness)
    if np.ndim(stiffness) == 0:
        k = np.full(m, float(k.ravel()[0]))
    if k.shape != (m,):
        raise ShapeError(f"stiffness must be a scalar or have shape ({m},) (one per bond), got {k.shape}")
    check_positive("stiffness", k)
    return np.ascontiguousarray(k)


def _check_rest_length(network: SpringNetwork, rest_length) -> np.ndarray:
    m = network.n_bonds
    if rest_length is None:
        return np.array(network.lengths)
    l0 = as_float_array("rest_length", rest_length)
    if np.ndim(rest_length) == 0:
        l0 = np.full(m, float(l0.ravel()[0]))
    if l0.shape != (m,):
        raise ShapeError(f"rest_length must be a scalar or have shape ({m},), got {l0.shape}")
    check_positive("rest_length", l0)
    return np.ascontiguousarray(l0)


def _check_forces(network: SpringNetwork, forces) -> tuple[np.ndarray, bool]:
    n, d = network.n_nodes, network.dim
    f = as_float_array("forces", forces)
    if f.ndim == 2 and f.shape == (n, d):
        return f[None], False
    if f.ndim == 3 and f.shape[1:] == (n, d) and f.shape[0] >= 1:
        return f, True
    raise ShapeError(f"forces must have shape ({n}, {d}) or (B, {n}, {d}), got {f.shape}")


# ---------------------------------------------------------------------------
# solve
# ---------------------------------------------------------------------------
def solve(
    network: SpringNetwork,
    stiffness: ArrayLike,
    forces: ArrayLike,
    *,
    nonlinear: bool = False,
    rest_length: ArrayLike | None = None,
    rtol: float = 1e-10,
    max_iter: int = 30,
    load_steps: int = 1,
    max_bisections: int = 10,
    check_rigidity: bool = True,
) -> Equilibrium:
    """Static equilibrium of a spring network under nodal forces.

    Parameters
    ----------
    network : SpringNetwork
    stiffness : float or array_like, shape (m,)
        Bond stiffnesses ``k`` (N/m), > 0.
    forces : array_like, shape (n, d) or (B, n, d)
        Nodal forces (N); a leading axis is a batch of load cases, all solved
        with one factorisation (linear model).
    nonlinear : bool
        Solve the geometrically exact model (large displacements) by Newton's
        method with a backtracking line search on the residual norm and
        adaptive load stepping.
    rest_length : float or array_like, shape (m,), optional
        Rest lengths ``l0`` (m); default the reference bond lengths (no prestress).
    rtol : float
        Nonlinear: converged when ``|R| <= rtol * (|f| + |k (lg - l0)|)`` on the free dofs
        (or below the round-off level ``100 eps |k lg|``).
    max_iter : int
        Nonlinear: Newton iterations per load increment before it is halved.
    load_steps : int
        Nonlinear: initial number of equal load increments.
    max_bisections : int
        Nonlinear: how many times an increment may be halved before giving up.
    check_rigidity : bool
        Check the factorisation's pivots for floppy modes (done once per network).

    Returns
    -------
    Equilibrium

    Raises
    ------
    ShapeError, InvalidTypeError, NonFiniteError, InvalidInputError
        Bad input (the message names the argument, shape and offending entry).
    SingularSystemError
        The network has floppy modes; the message gives their number and the
        nodes that move (also as attributes ``n_modes`` and ``nodes``).
    ConvergenceError
        Newton failed even with the smallest load increment; the message gives
        the residual norm.
    """
    _check_network(network)
    k = _check_stiffness(network, stiffness)
    l0 = _check_rest_length(network, rest_length)
    f, batched = _check_forces(network, forces)
    rtol = as_scalar("rtol", rtol, positive=True)
    max_iter = as_int("max_iter", max_iter, lower=1, upper=10**6)
    load_steps = as_int("load_steps", load_steps, lower=1, upper=10**6)
    max_bisections = as_int("max_bisections", max_bisections, lower=0, upper=10**4)
    nonlinear = as_bool("nonlinear", nonlinear)
    check_rigidity = as_bool("check_rigidity", check_rigidity)
    if nonlinear:
        eq = _solve_nonlinear(network, k, l0, f, rtol, max_iter, load_steps, max_bisections, check_rigidity)
    else:
        eq = _solve_linear(network, k, l0, f, check_rigidity)
    for name, a in (("displacements", eq.displacements), ("tensions", eq.tensions)):
        if not np.all(np.isfinite(a)):
            raise NonFiniteError(
                f"the equilibrium is not representable: its {name} overflow float64 "
                f"(stiffness {float(k.min()):.3g}..{float(k.max()):.3g} N/m, largest force "
                f"{float(np.abs(f).max()):.3g} N); rescale the units"
            )
    if not batched:
        eq = _unbatch(eq)
    return eq


def _unbatch(eq: Equilibrium) -> Equilibrium:
    return Equilibrium(
        network=eq.network,
        stiffness=eq.stiffness,
        rest_length=eq.rest_length,
        forces=eq.forces[0],
        displacements=eq.displacements[0],
        elongations=eq.elongations[0],
        tensions=eq.tensions[0],
        nonlinear=eq.nonlinear,
        iterations=eq.iterations,
        residual_norm=eq.residual_norm,
        _factors=eq._factors,
        _directions=eq._directions,
    )


def _scatter_free(network: SpringNetwork, xf: np.ndarray) -> np.ndarray:
    """(B, n_free) -> (B, n, d) with zeros on pinned dofs."""
    nb = xf.shape[0]
    out = np.zeros((nb, network.n_nodes * network.dim))
    out[:, network.free_dofs] = xf
    return out.reshape(nb, network.n_nodes, network.dim)


def _solve_linear(network, k, l0, f, check) -> Equilibrium:
    K, fac = _linear_factor(network, k, check)
    nb = f.shape[0]
    free = network.free_dofs
    rhs = f.reshape(nb, -1)[:, free]
    dl = network.lengths - l0  # lg - l0
    if np.any(dl != 0):
        pre = _kernels.internal_forces(
            network.bonds, np.ascontiguousarray(network.directions), -k * dl, network.n_nodes
        )
        rhs = rhs + pre.reshape(-1)[free][None, :]
    uf = fac.solve(np.ascontiguousarray(rhs.T)).T if fac.n else np.zeros((nb, 0))
    uf = np.atleast_2d(uf).reshape(nb, fac.n)
    u = _scatter_free(network, uf)
    e = _kernels.project_batch(network.bonds, np.ascontiguousarray(network.directions), u) + dl[None, :]
    res = np.linalg.norm((K @ uf.T).T - rhs, axis=1) if fac.n else np.zeros(nb)
    return Equilibrium(
        network=network,
        stiffness=k,
        rest_length=l0,
        forces=f,
        displacements=u,
        elongations=e,
        tensions=k[None, :] * e,
        nonlinear=False,
        iterations=np.zeros(nb, dtype=np.int64),
        residual_norm=res,
        _factors=(fac,),
        _directions=np.asarray(network.directions),
    )


def _nl_residual(network, k, l0, u, f_free):
    lengths, dirs = _kernels.current_geometry(network.points, network.bonds, u)
    t = k * (lengths - l0)
    r = (
        _kernels.internal_forces(network.bonds, dirs, t, network.n_nodes).reshape(-1)[network.free_dofs]
        - f_free
    )
    return r, lengths, dirs, t


def _nl_tangent(network, k, lengths, dirs, t):
    entry_map, indices, _ = network._pattern
    data = _kernels.assemble(dirs, k, t / lengths, entry_map, indices.size)
    return _csc(network, data)


def _newton(network, k, l0, u0, f_free, tol, max_iter):
    """Newton with backtracking on |R| from ``u0``; returns (u, |R|, iterations, converged)."""
    u = u0.copy()
    r, lengths, dirs, t = _nl_residual(network, k, l0, u, f_free)
    rn = float(np.linalg.norm(r))
    for it in range(max_iter + 1):
        if rn <= tol:
            return u, rn, it, True
        if it == max_iter or not np.isfinite(rn) or np.any(lengths <= 0):
            break
        try:
            fac = _factorize(_nl_tangent(network, k, lengths, dirs, t), symmetric_pd=False)
        except RuntimeError:
            break
        du = np.zeros(network.n_nodes * network.dim)
        du[network.free_dofs] = fac.solve(-r)
        du = du.reshape(u.shape)
        if not np.all(np.isfinite(du)):
            break
        alpha = 1.0
        while True:
            un = u + alpha * du
            rn_new_r, ln, dn, tn = _nl_residual(network, k, l0, un, f_free)
            rn_new = float(np.linalg.norm(rn_new_r))
            if (np.isfinite(rn_new) and rn_new <= (1.0 - 1e-4 * alpha) * rn) or alpha < 1.0 / 64:
                break
            alpha *= 0.5
        if not np.isfinite(rn_new):
            break
        u, r, lengths, dirs, t, rn = un, rn_new_r, ln, dn, tn, rn_new
    return u, rn, it, False


def _solve_nonlinear(network, k, l0, f, rtol, max_iter, load_steps, max_bisections, check) -> Equilibrium:
    if check and not network.__dict__.get("_rigid", False):
        _linear_factor(network, k, True)  # raises SingularSystemError on floppy modes
    nb = f.shape[0]
    free = network.free_dofs
    n, d = network.n_nodes, network.dim
    pre = _kernels.internal_forces(
        network.bonds, np.ascontiguousarray(network.directions), k * (network.lengths - l0), n
    ).reshape(-1)[free]
    roundoff = 100.0 * np.finfo(float).eps * float(np.linalg.norm(k * network.lengths))
    us, es, ts, dirs_all, facs = [], [], [], [], []
    iters = np.zeros(nb, dtype=np.int64)
    resn = np.zeros(nb)
    for s in range(nb):
        f_free = f[s].reshape(-1)[free]
        scale = float(np.linalg.norm(f_free) + np.linalg.norm(pre))
        # floor: round-off of the internal forces, eps * |k l|, cannot be beaten
        tol = max(rtol * scale, roundoff)
        u = np.zeros((n, d))
        step0 = 1.0 / load_steps
        lam, step, halvings, total, rn = 0.0, step0, 0, 0, float("nan")
        while lam < 1.0:
            target = min(1.0, lam + step)
            if target <= lam:  # the increment vanished below float resolution: no progress possible
                raise ConvergenceError(
                    f"nonlinear equilibrium of load case {s} did not converge: the load increment "
                    f"shrank to {step:.3g} and cannot advance past load fraction {lam:.6g} "
                    f"(last residual norm {rn:.3e} N, tolerance {tol:.3e} N); the load may exceed "
                    "a limit point (snap-through or buckling)"
                )
            # tolerance of intermediate increments relative to the full load keeps them cheap
            un, rn, it, ok = _newton(network, k, l0, u, target * f_free, tol, max_iter)
            total += it
            if ok:
                u, lam = un, target
                step = min(2.0 * step, step0)  # regrow after a success: bounded work to full load
                continue
            halvings += 1
            if halvings > max_bisections:
                raise ConvergenceError(
                    f"nonlinear equilibrium of load case {s} did not converge: residual norm "
                    f"{rn:.3e} N (tolerance {tol:.3e} N) at load fraction {target:.4g} after "
                    f"{max_bisections} load-step bisections (load fraction reached: {lam:.6g})"
                )
            step *= 0.5
        r, lengths, dirs, t = _nl_residual(network, k, l0, u, f_free)
        try:
            fac = _factorize(_nl_tangent(network, k, lengths, dirs, t), symmetric_pd=False)
        except RuntimeError:
            raise SingularSystemError(
                f"the tangent stiffness at the equilibrium of load case {s} is singular "
                "(critical point: buckling or a snap-through)"
            ) from None
        us.append(u)
        es.append(lengths - l0)
        ts.append(t)
        dirs_all.append(dirs)
        facs.append(fac)
        iters[s] = total
        resn[s] = float(np.linalg.norm(r))
    e = np.array(es)
    return Equilibrium(
        network=network,
        stiffness=k,
        rest_length=l0,
        forces=f,
        displacements=np.array(us),
        elongations=e,
        tensions=np.array(ts),
        nonlinear=True,
        iterations=iters,
        residual_norm=resn,
        _factors=tuple(facs),
        _directions=np.array(dirs_all),
    )
