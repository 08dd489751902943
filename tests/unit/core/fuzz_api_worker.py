"""Property-based probes of the public API, one package per process.

Run as ``python fuzz_api_worker.py PACKAGE [MAX_EXAMPLES]``. Every target is a valid call
(small mesh, network, horizon, problem); Hypothesis draws one argument and one way to break
or re-lay it out (dtype int/float32/complex/bool/object, Fortran order, strides, empty and
0-d arrays, an added or dropped axis, one entry set to NaN/inf/huge/denormal, an index out of
range, a wrong type for a scalar or an object argument). The call must either raise a
``physim.errors`` type or return finite results (shaped like the valid call's when the
argument kept its shape; equal to them when only the memory layout changed).

Each call runs under ``faulthandler``: a segfault or a call running past ``CALL_TIMEOUT_S``
ends the process with a traceback and the last ``CALL`` line on stdout names the probe, so
the parent test fails instead of the test run dying. Every problem found is printed as one
``FAIL`` line; the exit status is 1 if there was any.
"""

from __future__ import annotations

import dataclasses
import faulthandler
import os
import sys
import tempfile
import traceback
import warnings

import numpy as np
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from physim import errors

CALL_TIMEOUT_S = 60.0

# ------------------------------------------------------------------------------ mutations

POKES = [np.nan, np.inf, -np.inf, 1e300, -1e300, 5e-324, 1e-310, -1.0, 0.0]
INDEX_POKES = [-1, -(2**63), 2**31, 2**40, 2**63 - 1, "n"]
SCALAR_BAD = [np.nan, np.inf, -np.inf, -1.0, 0.0, 1e300, -1e300, 5e-324, 2**70, None, "1", True, 1j, "arr"]
OBJECT_BAD = [None, 3, "x", 1.5, "arr"]

LAYOUT = {"fortran", "strided", "negstride"}


def _strided(a: np.ndarray) -> np.ndarray:
    big = np.repeat(a, 2, axis=-1) if a.ndim else a
    return big[..., ::2] if a.ndim else a


def _negstride(a: np.ndarray) -> np.ndarray:
    if a.ndim == 0:
        return a
    return np.flip(np.flip(a, axis=0).copy(), axis=0)


def mutate_array(a: np.ndarray, how: str, pos: int, index_upper: int | None):
    """Return a broken or re-laid-out version of the valid array ``a``."""
    a = np.asarray(a)
    if how == "fortran":
        return np.asfortranarray(a)
    if how == "strided":
        return _strided(a)
    if how == "negstride":
        return _negstride(a)
    if how == "int":
        return a.astype(np.int64)
    if how == "float32":
        return a.astype(np.float32)
    if how == "float":
        return a.astype(np.float64) + 0.5
    if how == "uint":
        return np.abs(a).astype(np.uint64)
    if how == "complex":
        return a.astype(np.complex128)
    if how == "bool":
        return a.astype(bool)
    if how == "object":
        return a.astype(object)
    if how == "empty":
        return a[:0] if a.ndim else np.zeros(0)
    if how == "zerod":
        return np.asarray(a.reshape(-1)[0] if a.size else 0.0)
    if how == "addaxis":
        return a[None]
    if how == "dropcol":
        return a[..., :-1] if a.ndim and a.shape[-1] else a
    if how == "transpose":
        return a.T.copy()
    if how == "list":
        return a.tolist()
    if how.startswith("poke:"):
        b = np.array(a, dtype=np.float64, copy=True)
        if b.size:
            b.reshape(-1)[pos % b.size] = float(how[5:])
        return b
    if how.startswith("ipoke:"):
        b = np.array(a, copy=True)
        if b.size:
            v = how[6:]
            v = (index_upper if index_upper is not None else 10**6) if v == "n" else int(v)
            b = b.astype(np.int64) if -(2**63) <= v < 2**63 else b.astype(object)
            b.reshape(-1)[pos % b.size] = v
        return b
    raise AssertionError(how)


ARRAY_HOWS = (
    sorted(LAYOUT)
    + [
        "int",
        "float32",
        "complex",
        "bool",
        "object",
        "empty",
        "zerod",
        "addaxis",
        "dropcol",
        "transpose",
        "list",
    ]
    + [f"poke:{v!r}" for v in POKES]
)
INDEX_HOWS = (
    sorted(LAYOUT)
    + [
        "float",
        "float32",
        "uint",
        "complex",
        "bool",
        "object",
        "empty",
        "zerod",
        "addaxis",
        "dropcol",
        "list",
    ]
    + [f"ipoke:{v}" for v in INDEX_POKES]
)


def mutate_scalar(v, how):
    if how == "arr":
        return np.array([v, v]) if not isinstance(v, (tuple, list)) else np.array(v)
    if how == "np":
        return np.float64(v) if isinstance(v, float) else np.int64(v) if isinstance(v, int) else v
    return how


# ------------------------------------------------------------------------------ checking


def _leaves(obj, name="result", depth=0, seen=None):
    """(name, ndarray or float) for every numeric leaf of a result (a few levels deep)."""
    seen = set() if seen is None else seen
    if id(obj) in seen or depth > 3:
        return
    if isinstance(obj, (np.ndarray, np.generic)):
        yield name, np.asarray(obj)
        return
    if isinstance(obj, (bool, str, bytes, type(None))):
        return
    if isinstance(obj, (int, float, complex)):
        yield name, np.asarray(obj)
        return
    seen.add(id(obj))
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _leaves(v, f"{name}[{k!r}]", depth + 1, seen)
    elif isinstance(obj, (tuple, list)):
        for i, v in enumerate(obj[:50]):
            yield from _leaves(v, f"{name}[{i}]", depth + 1, seen)
    elif dataclasses.is_dataclass(obj):
        for f in dataclasses.fields(obj):
            yield from _leaves(getattr(obj, f.name), f"{name}.{f.name}", depth + 1, seen)
    elif type(obj).__module__.startswith("physim") and hasattr(obj, "__dict__"):
        for k, v in vars(obj).items():
            if not k.startswith("_"):
                yield from _leaves(v, f"{name}.{k}", depth + 1, seen)


#: leaves that measure time, not results (compared with nothing)
CLOCKS = ("['time']", "['elapsed']", "['wall_time']", ".time_s", ".elapsed", ".seconds", ".wall_time")


def _numeric(leaves):
    return {k: v for k, v in leaves if v.dtype.kind in "biufc" and not k.endswith(CLOCKS)}


class Target:
    """A valid call ``fn(**args)`` and the kind of each argument."""

    def __init__(self, name, fn, args, kinds, *, may_be_nonfinite=(), warned_nonfinite=(), max_examples=None):
        self.name, self.fn, self.args, self.kinds = name, fn, args, kinds
        self.may_be_nonfinite = tuple(may_be_nonfinite)  # leaf names that may hold inf (documented)
        self.warned_nonfinite = dict(warned_nonfinite)  # leaf name -> warning that permits inf
        self.max_examples = max_examples
        self.baseline = _numeric(_leaves(self.fn(**{k: _fresh(v) for k, v in args.items()})))


def _fresh(v):
    return v.copy() if isinstance(v, np.ndarray) else v


FAILURES: list[str] = []


def _check(t: Target, arg, how, value):
    kw = {k: _fresh(v) for k, v in t.args.items()}
    kw[arg] = value
    label = f"{t.name}: {arg} <- {how}"
    print("CALL", label, flush=True)
    faulthandler.dump_traceback_later(CALL_TIMEOUT_S, exit=True)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                out = t.fn(**kw)
            except errors.PhysimError:
                return
            except Exception as exc:
                FAILURES.append(f"{label}: untyped {type(exc).__name__}: {str(exc)[:300]}")
                print(traceback.format_exc()[-1500:], file=sys.stderr)
                return
    finally:
        faulthandler.cancel_dump_traceback_later()
    warned = {type(w.message).__name__ for w in caught}
    got = _numeric(_leaves(out))
    for k, v in got.items():
        if v.dtype.kind in "fc" and not np.all(np.isfinite(v)):
            if k in t.may_be_nonfinite or t.warned_nonfinite.get(k) in warned:
                continue
            FAILURES.append(
                f"{label}: {k} has non-finite values, no error raised (warnings: {sorted(warned)})"
            )
            return
    same_shape = (
        how in LAYOUT or how.startswith(("poke", "ipoke")) or how in {"int", "float32", "bool", "list"}
    )
    if same_shape:
        for k, v in t.baseline.items():
            if k in got and got[k].shape != v.shape:
                FAILURES.append(f"{label}: {k} has shape {got[k].shape}, the valid call gave {v.shape}")
                return
    if how in LAYOUT:
        for k, v in t.baseline.items():
            w = got.get(k)
            if (
                w is None
                or w.shape != v.shape
                or not np.allclose(w, v, rtol=1e-9, atol=1e-12, equal_nan=True)
            ):
                FAILURES.append(f"{label}: {k} differs from the valid call with the same values")
                return


def run_target(t: Target, max_examples: int):
    names = sorted(t.kinds)

    @settings(
        max_examples=t.max_examples or max_examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=(Phase.explicit, Phase.generate),
        suppress_health_check=list(HealthCheck),
    )
    @given(st.data())
    def probe(data):
        arg = data.draw(st.sampled_from(names), label="arg")
        kind = t.kinds[arg]
        v = t.args[arg]
        if kind in ("array", "index"):
            hows = ARRAY_HOWS if kind == "array" else INDEX_HOWS
            how = data.draw(st.sampled_from(hows), label="how")
            pos = data.draw(st.integers(0, 10**6), label="pos")
            upper = None
            if kind == "index":
                upper = int(np.max(v)) + 1 if np.size(v) else 1
            value = mutate_array(v, how, pos, upper)
        elif kind == "scalar":
            how = data.draw(st.sampled_from(SCALAR_BAD + ["np"]), label="how")
            value = mutate_scalar(v, how)
            how = repr(how)
        else:  # an object argument (mesh, network, model, result, callable)
            how = data.draw(st.sampled_from(OBJECT_BAD), label="how")
            value = mutate_scalar(v, how)
            how = repr(how)
        _check(t, arg, how, value)

    probe()


# ------------------------------------------------------------------------------ targets


def lattice_targets():
    import physim.lattice as L

    net = L.triangular_lattice((3, 2), fixed=[0, 2])
    pts, bonds, fixed = np.array(net.points), np.array(net.bonds), np.array([0, 2])
    k = np.linspace(100.0, 160.0, net.n_bonds)
    f = np.zeros((net.n_nodes, 2))
    f[-1, 1] = -0.02
    fb = np.stack([f, 0.5 * f])
    l0 = np.array(net.lengths) * 1.001
    outputs = np.array([[net.n_nodes - 1, 1], [net.n_nodes - 2, 0]])
    u = np.random.default_rng(0).standard_normal((net.n_nodes, 2)) * 1e-3
    A, O, S, I = "array", "object", "scalar", "index"

    def solve_adj(network, stiffness, forces, rest_length, g, max_iter, rtol):
        eq = L.solve(network, stiffness, forces, rest_length=rest_length, max_iter=max_iter, rtol=rtol)
        return eq, L.adjoint(eq, g)

    def solve_nl(network, stiffness, forces, load_steps, max_bisections):
        eq = L.solve(
            network, stiffness, forces, nonlinear=True, load_steps=load_steps, max_bisections=max_bisections
        )
        return eq, L.adjoint(eq, np.ones_like(eq.displacements))

    def build(points, bonds, fixed):
        n = L.SpringNetwork(points, bonds, fixed)
        return n, L.floppy_modes(n).count

    return [
        Target(
            "SpringNetwork",
            build,
            dict(points=pts, bonds=bonds, fixed=fixed),
            dict(points=A, bonds=I, fixed=I),
        ),
        Target(
            "solve+adjoint",
            solve_adj,
            dict(network=net, stiffness=k, forces=f, rest_length=l0, g=u, max_iter=30, rtol=1e-10),
            dict(network=O, stiffness=A, forces=A, rest_length=A, g=A, max_iter=S, rtol=S),
        ),
        Target(
            "solve(nonlinear)+adjoint",
            solve_nl,
            dict(network=net, stiffness=k, forces=fb, load_steps=2, max_bisections=4),
            dict(network=O, stiffness=A, forces=A, load_steps=S, max_bisections=S),
            max_examples=40,
        ),
        Target(
            "floppy_modes",
            lambda network, rtol: L.floppy_modes(network, rtol=rtol),
            dict(network=net, rtol=1e-10),
            dict(network=O, rtol=S),
        ),
        Target(
            "stiffness_matrix",
            lambda network, stiffness: L.stiffness_matrix(network, stiffness).toarray(),
            dict(network=net, stiffness=k),
            dict(network=O, stiffness=A),
        ),
        Target(
            "mse_loss",
            lambda u, outputs, target, scale: L.mse_loss(u, outputs, target, scale=scale),
            dict(u=u, outputs=outputs, target=np.array([0.001, -0.002]), scale=1.0),
            dict(u=A, outputs=I, target=A, scale=S),
        ),
        Target(
            "classifier_loss",
            lambda u, outputs, labels, eps: L.classifier_loss(u, outputs, labels, eps=eps),
            dict(u=np.stack([u, -u]), outputs=outputs, labels=np.array([0, 1]), eps=1e-30),
            dict(u=A, outputs=I, labels=I, eps=S),
        ),
        Target(
            "class_probabilities", L.class_probabilities, dict(u=u, outputs=outputs), dict(u=A, outputs=I)
        ),
        Target(
            "accuracy",
            L.accuracy,
            dict(network=net, stiffness=k, forces=fb, labels=np.array([0, 1]), outputs=outputs),
            dict(network=O, stiffness=A, forces=A, labels=I, outputs=I),
        ),
        Target(
            "feature_forces",
            lambda network, features, inputs, force_scale: L.feature_forces(
                network, features, inputs, force_scale=force_scale
            ),
            dict(
                network=net,
                features=np.array([[0.2, 0.5], [0.9, 0.1]]),
                inputs=np.array([net.n_nodes - 1, net.n_nodes - 2]),
                force_scale=0.049,
            ),
            dict(network=O, features=A, inputs=I, force_scale=S),
        ),
        Target(
            "remove_bonds",
            lambda network, idx: L.remove_bonds(network, idx).bonds,
            dict(network=net, idx=np.array([0, 3])),
            dict(network=O, idx=I),
        ),
        Target(
            "stiffness_from_width",
            lambda width, youngs_modulus: L.stiffness_from_width(width, youngs_modulus),
            dict(width=np.full(4, 0.003), youngs_modulus=5.5e5),
            dict(width=A, youngs_modulus=S),
        ),
        Target(
            "triangular_lattice",
            lambda rows, spacing: L.triangular_lattice(rows, spacing=spacing).points,
            dict(rows=np.array([3, 2]), spacing=0.016),
            dict(rows=I, spacing=S),
        ),
        Target(
            "square_lattice",
            lambda nx, ny, spacing: L.square_lattice(nx, ny, spacing=spacing).points,
            dict(nx=3, ny=2, spacing=0.016),
            dict(nx=S, ny=S, spacing=S),
        ),
    ]


def eikonal_targets():
    import physim.eikonal as K

    mesh = K.box_tet_mesh(2, 3.0, jitter=0.1, seed=1)
    pts, cells = np.array(mesh.points), np.array(mesh.cells)
    tri = K.square_tri_mesh(3, 2.0)
    D = np.tile(np.diag([0.36, 0.16, 0.16]), (mesh.n_cells, 1, 1))
    fib = np.tile([1.0, 0.2, 0.1], (mesh.n_cells, 1))
    g = np.random.default_rng(1).standard_normal(mesh.n_points)
    A, O, S, I = "array", "object", "scalar", "index"

    def solve_adj(mesh, D, sources, source_times, g, init_radius, tol, max_visits):
        act = K.solve(mesh, D, sources, source_times, init_radius=init_radius, tol=tol, max_visits=max_visits)
        return act, K.adjoint(act, g)

    def solve_pts(mesh, velocity, sources, source_times, g):
        act = K.solve(mesh, sources=sources, source_times=source_times, velocity=velocity)
        return act, K.adjoint(act, g)

    def solve_vel(fibers, v_fiber, v_cross, sources):
        Dv = K.conduction_tensor(fibers, v_fiber, v_cross)
        return Dv, K.solve(mesh, Dv, sources)

    def vjp(fibers, v_fiber, v_cross, dD):
        return K.conduction_tensor_vjp(fibers, v_fiber, v_cross, None, dD)

    return [
        Target(
            "TetMesh",
            lambda points, tets: K.TetMesh(points, tets).measures,
            dict(points=pts, tets=cells),
            dict(points=A, tets=I),
        ),
        Target(
            "TriMesh",
            lambda points, triangles: K.TriMesh(points, triangles).measures,
            dict(points=np.array(tri.points), triangles=np.array(tri.cells)),
            dict(points=A, triangles=I),
        ),
        Target(
            "solve+adjoint",
            solve_adj,
            dict(
                mesh=mesh,
                D=D,
                sources=np.array([0, 7]),
                source_times=np.array([0.0, 1.0]),
                g=g,
                init_radius=0.0,
                tol=1e-8,
                max_visits=1000,
            ),
            dict(mesh=O, D=A, sources=I, source_times=A, g=A, init_radius=S, tol=S, max_visits=S),
            max_examples=120,
        ),
        Target(
            "solve(points)+adjoint",
            solve_pts,
            dict(
                mesh=mesh,
                velocity=np.full(mesh.n_cells, 0.6),
                sources=np.array([[0.5, 0.6, 0.7], [2.0, 2.1, 1.9]]),
                source_times=np.array([0.0, 0.5]),
                g=g,
            ),
            dict(mesh=O, velocity=A, sources=A, source_times=A, g=A),
        ),
        Target(
            "conduction_tensor+solve",
            solve_vel,
            dict(fibers=fib, v_fiber=0.6, v_cross=0.3, sources=np.array([3])),
            dict(fibers=A, v_fiber=S, v_cross=S, sources=I),
        ),
        Target(
            "conduction_tensor_vjp",
            vjp,
            dict(fibers=fib, v_fiber=0.6, v_cross=0.3, dD=D),
            dict(fibers=A, v_fiber=S, v_cross=S, dD=A),
        ),
        Target(
            "locate",
            lambda pts, tol: mesh.locate(pts, tol=tol),
            dict(pts=np.array([[0.5, 0.5, 0.5], [1.0, 2.0, 2.5]]), tol=1e-9),
            dict(pts=A, tol=S),
            may_be_nonfinite=(),
        ),
        Target(
            "box_tet_mesh",
            lambda n, size, jitter: K.box_tet_mesh(n, size, jitter=jitter, seed=0).points,
            dict(n=2, size=1.0, jitter=0.1),
            dict(n=S, size=S, jitter=S),
        ),
    ]


def cardiac_targets():
    import physim.cardiac as C
    from physim.eikonal import box_tet_mesh

    m = box_tet_mesh(2, 10.0, jitter=0.05, seed=3)
    pts, tets = np.array(m.points), np.array(m.cells)
    G = np.tile(np.diag([0.17, 0.02, 0.02]), (len(tets), 1, 1))
    electrodes = np.array([[40.0, 0, 0], [0, 40.0, 0], [0, 0, 40.0], [-30.0, -30.0, -30.0]])
    leads = np.array([[1.0, -1.0, 0, 0], [0, 1.0, -1.0, 0]])
    lf = C.lead_field((pts, tets), electrodes, G, leads=leads)
    phi = 2.0 * np.linalg.norm(pts - pts[0], axis=1)
    ecg = C.simulate_ecg(lf, phi, n_samples=40, dt=2.0)
    target = np.sin(np.arange(40) / 5.0)[None, :] * np.array([[1.0], [0.5]])
    A, O, S, I = "array", "object", "scalar", "index"

    def lf_sim(points, tets, electrodes, conductivity, leads, sigma_bath):
        f = C.lead_field((points, tets), electrodes, conductivity, leads=leads, sigma_bath=sigma_bath)
        e = C.simulate_ecg(f, phi, n_samples=20, dt=2.0)
        return f, e, C.ecg_adjoint(e, np.ones_like(e.signals), conductivity=True)

    def sim_adj(lead_field, activation_times, n_samples, dt, t0, apd_ms, upstroke_ms):
        model = C.ActionPotential(apd_ms=apd_ms, upstroke_ms=upstroke_ms)
        e = C.simulate_ecg(lead_field, activation_times, model=model, n_samples=n_samples, dt=dt, t0=t0)
        return e, C.ecg_adjoint(e, np.ones_like(e.signals), conductivity=True)

    return [
        Target(
            "lead_field+simulate_ecg+adjoint",
            lf_sim,
            dict(points=pts, tets=tets, electrodes=electrodes, conductivity=G, leads=leads, sigma_bath=0.2),
            dict(points=A, tets=I, electrodes=A, conductivity=A, leads=A, sigma_bath=S),
            max_examples=80,
        ),
        Target(
            "simulate_ecg+adjoint",
            sim_adj,
            dict(
                lead_field=lf,
                activation_times=phi,
                n_samples=30,
                dt=2.0,
                t0=0.0,
                apd_ms=np.full(len(pts), 200.0),
                upstroke_ms=3.0,
            ),
            dict(lead_field=O, activation_times=A, n_samples=S, dt=S, t0=S, apd_ms=A, upstroke_ms=S),
            max_examples=80,
        ),
        Target(
            "ecg_adjoint",
            lambda ecg, lam: C.ecg_adjoint(ecg, lam, conductivity=True),
            dict(ecg=ecg, lam=np.ones_like(ecg.signals)),
            dict(ecg=O, lam=A),
        ),
        Target(
            "correlation_loss",
            lambda ecg, target, eps: C.correlation_loss(ecg, target, eps=eps),
            dict(ecg=np.array(ecg.signals), target=target, eps=1e-12),
            dict(ecg=A, target=A, eps=S),
        ),
        Target(
            "lead_mse_loss",
            lambda ecg, target: C.lead_mse_loss(ecg, target),
            dict(ecg=np.array(ecg.signals), target=target),
            dict(ecg=A, target=A),
        ),
        Target(
            "shifted_correlation_loss",
            lambda ecg, target, max_shift_ms, temperature: C.shifted_correlation_loss(
                ecg, target, max_shift_ms=max_shift_ms, dt=2.0, temperature=temperature
            ),
            dict(ecg=np.array(ecg.signals), target=target, max_shift_ms=6.0, temperature=1e-3),
            dict(ecg=A, target=A, max_shift_ms=S, temperature=S),
        ),
        Target(
            "intracellular_conductivity",
            lambda fibers, sigma_fiber, sigma_cross: C.intracellular_conductivity(
                fibers, sigma_fiber, sigma_cross
            ),
            dict(fibers=np.tile([1.0, 0.0, 0.0], (5, 1)), sigma_fiber=0.17, sigma_cross=0.019),
            dict(fibers=A, sigma_fiber=S, sigma_cross=S),
        ),
        Target(
            "standard_12_lead",
            lambda points, tets, chest_margin: (
                C.standard_12_lead((points, tets), chest_margin=chest_margin).electrodes
            ),
            dict(points=pts, tets=tets, chest_margin=20.0),
            dict(points=A, tets=I, chest_margin=S),
        ),
    ]


def ekf_targets():
    import physim.ekf as F

    pos = np.array([[2.0, 1.0], [-1.0, 3.0], [4.0, -2.0]])
    beacons = F.Beacons(pos, 0.1, 0.05)
    x0 = np.array([0.0, 0.0, 0.1])
    P0 = np.diag([0.1, 0.1, 0.05])
    U = np.tile([1.0, 0.1], (8, 1))
    M = np.diag([0.01, 0.005])
    Q0 = np.eye(3) * 1e-4
    model = F.Unicycle(0.1)
    A, O, S = "array", "object", "scalar"

    def roll_adj(model, beacons, x0, P0, controls, M, Q0, W):
        r = F.covariance_rollout(model, beacons, x0, P0, controls, M, Q0)
        return r, F.adjoint(r, F.FinalTrace(W)), F.adjoint(r, F.HorizonSum(F.FinalLogDet()))

    def beac(positions, range_std, bearing_std):
        b = F.Beacons(positions, range_std, bearing_std)
        return F.covariance_rollout(model, b, x0, P0, U, M, Q0)

    def filt(x0, P0, controls, M, Q0, n_runs, seed):
        return F.run_filter(model, beacons, x0, P0, controls, M, Q0, n_runs=n_runs, seed=seed)

    def plan(x0, controls0, bounds, maxiter, smooth_weight):
        return F.plan_active_sensing(
            model,
            beacons,
            x0,
            P0,
            controls0,
            M,
            Q0,
            bounds=bounds,
            maxiter=maxiter,
            smooth_weight=smooth_weight,
        )

    def keep(centers, radii):
        c = F.KeepOut(centers, radii)
        return (
            c,
            F.covariance_rollout(model, beacons, x0, P0, U, M, Q0),
            c.values(np.tile(x0, (4, 1)), beacons),
        )

    return [
        Target(
            "covariance_rollout+adjoint",
            roll_adj,
            dict(
                model=model, beacons=beacons, x0=x0, P0=P0, controls=U, M=M, Q0=Q0, W=np.diag([1.0, 1.0, 0.0])
            ),
            dict(model=O, beacons=O, x0=A, P0=A, controls=A, M=A, Q0=A, W=A),
            max_examples=120,
        ),
        Target(
            "Beacons+rollout",
            beac,
            dict(positions=pos, range_std=0.1, bearing_std=0.05),
            dict(positions=A, range_std=S, bearing_std=S),
        ),
        Target(
            "Unicycle+rollout",
            lambda dt: F.covariance_rollout(F.Unicycle(dt), beacons, x0, P0, U, M, Q0),
            dict(dt=0.1),
            dict(dt=S),
        ),
        Target(
            "Bicycle+rollout",
            lambda dt, wheelbase: F.covariance_rollout(F.Bicycle(dt, wheelbase), beacons, x0, P0, U, M, Q0),
            dict(dt=0.1, wheelbase=1.0),
            dict(dt=S, wheelbase=S),
        ),
        Target(
            "run_filter",
            filt,
            dict(x0=x0, P0=P0, controls=U, M=M, Q0=Q0, n_runs=2, seed=0),
            dict(x0=A, P0=A, controls=A, M=A, Q0=A, n_runs=S, seed=S),
        ),
        Target(
            "plan_active_sensing",
            plan,
            dict(
                x0=x0, controls0=U, bounds=np.array([[0.0, -1.0], [2.0, 1.0]]), maxiter=2, smooth_weight=0.0
            ),
            dict(x0=A, controls0=A, bounds=A, maxiter=S, smooth_weight=S),
            max_examples=40,
        ),
        Target(
            "KeepOut",
            keep,
            dict(centers=np.array([[5.0, 5.0]]), radii=np.array([1.0])),
            dict(centers=A, radii=A),
        ),
    ]


def optim_targets():
    import physim.optim as O_

    def quad(x):  # any shape: the probes may change the shape of x0
        d = np.asarray(x, dtype=float) - 0.5
        return float(np.sum(d * d)), 2 * d

    A, S = "array", "scalar"

    def mini(x0, bounds, maxiter, tol, method):
        return O_.minimize(quad, x0, method=method, bounds=bounds, maxiter=maxiter, tol=tol, progress=False)

    def adam(x0, lr, eps, maxiter):
        return O_.minimize(quad, x0, method="adam", lr=lr, eps=eps, maxiter=maxiter, progress=False)

    def mb(x0, n_samples, batch_size, epochs, seed):
        return O_.minimize(
            lambda x, b: quad(x),
            x0,
            method="adam",
            n_samples=n_samples,
            batch_size=batch_size,
            epochs=epochs,
            seed=seed,
            progress=False,
        )

    def bounded(lower, upper, z, beta):
        t = O_.Bounded(lower, upper, beta)
        return t.forward(z), t.inverse(t.forward(z))

    def grad_check(x, direction, h0):
        return O_.check_gradient(quad, x, direction, h0=h0)

    bnd = [(-5.0, 5.0)] * 3
    return [
        Target(
            "minimize(lbfgs)",
            lambda x0, bounds, maxiter, tol: mini(x0, bounds, maxiter, tol, "lbfgs"),
            dict(x0=np.zeros(3), bounds=np.array(bnd), maxiter=20, tol=1e-8),
            dict(x0=A, bounds=A, maxiter=S, tol=S),
        ),
        Target(
            "minimize(slsqp)",
            lambda x0, bounds, maxiter, tol: mini(x0, bounds, maxiter, tol, "slsqp"),
            dict(x0=np.zeros(3), bounds=np.array(bnd), maxiter=20, tol=1e-8),
            dict(x0=A, bounds=A, maxiter=S, tol=S),
        ),
        Target(
            "minimize(adam)",
            adam,
            dict(x0=np.zeros(3), lr=0.1, eps=1e-8, maxiter=10),
            dict(x0=A, lr=S, eps=S, maxiter=S),
        ),
        Target(
            "minimize(minibatch adam)",
            mb,
            dict(x0=np.zeros(3), n_samples=12, batch_size=4, epochs=2, seed=0),
            dict(x0=A, n_samples=S, batch_size=S, epochs=S, seed=S),
        ),
        Target(
            "Bounded",
            bounded,
            dict(lower=np.array([0.0, 1.0]), upper=np.array([1.0, 3.0]), z=np.array([0.3, -0.2]), beta=1.0),
            dict(lower=A, upper=A, z=A, beta=S),
        ),
        Target(
            "check_gradient",
            grad_check,
            dict(x=np.array([0.3, -0.2, 0.1]), direction=np.array([1.0, 0.5, -0.3]), h0=1e-2),
            dict(x=A, direction=A, h0=S),
            may_be_nonfinite=("result.rate", "result.rates"),
        ),  # NaN: round-off (documented)
    ]


def io_targets():
    from physim.io import read_mesh, write_mesh

    tmp = tempfile.mkdtemp(prefix="physim-fuzz-")
    pts = np.array([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]])
    tets = np.array([[0, 1, 2, 3], [1, 2, 3, 4]])
    A, S, I = "array", "scalar", "index"
    counter = [0]

    def write_read(points, tets, pdata, cdata, suffix):
        counter[0] += 1
        p = write_mesh(
            os.path.join(tmp, f"m{counter[0]}{suffix}"),
            points,
            {"tetra": tets},
            point_data={"u": pdata},
            cell_data={"c": cdata},
        )
        m = read_mesh(p)
        os.unlink(p)
        return m.points, m.point_data["u"], m.cells_dict["tetra"]

    def read_bytes(content):
        counter[0] += 1
        p = os.path.join(tmp, f"r{counter[0]}.vtu")
        with open(p, "wb") as fh:
            fh.write(
                np.asarray(content, dtype=np.uint8).tobytes()
                if np.asarray(content).dtype != object
                else b"\x00"
            )
        m = read_mesh(p)
        return m.points

    good = np.frombuffer(
        open(write_mesh(os.path.join(tmp, "good.vtu"), pts, {"tetra": tets}), "rb").read(), dtype=np.uint8
    ).copy()
    return [
        Target(
            "write_mesh+read_mesh",
            write_read,
            dict(points=pts, tets=tets, pdata=np.arange(5.0), cdata=np.array([1.0, 2.0]), suffix=".vtu"),
            dict(points=A, tets=I, pdata=A, cdata=A, suffix=S),
            may_be_nonfinite=("result[1]",),
        ),  # data fields may hold NaN/inf (unreached times) and round-trip
        Target(
            "read_mesh(corrupt bytes)", read_bytes, dict(content=good), dict(content="array"), max_examples=40
        ),
    ]


def selftest_targets():
    """A target that crashes the process on a non-finite entry (checks the harness itself)."""
    import ctypes

    def crash(a):
        a = np.asarray(a, dtype=float)
        if not np.all(np.isfinite(a)):
            ctypes.string_at(0)  # SIGSEGV
        return a

    return [Target("crash_on_nan", crash, dict(a=np.ones(3)), dict(a="array"), max_examples=200)]


PACKAGES = {
    "_selftest": selftest_targets,
    "lattice": lattice_targets,
    "eikonal": eikonal_targets,
    "cardiac": cardiac_targets,
    "ekf": ekf_targets,
    "optim": optim_targets,
    "io": io_targets,
}


def main(argv):
    package = argv[1]
    max_examples = int(argv[2]) if len(argv) > 2 else 60
    only = argv[3] if len(argv) > 3 else None
    faulthandler.enable()
    warnings.simplefilter("ignore")
    n = 0
    for t in PACKAGES[package]():
        if only and only != t.name:
            continue
        run_target(t, max_examples)
        n += 1
    for f in FAILURES:
        print("FAIL", f, flush=True)
    print(f"DONE {package}: {n} targets, {len(FAILURES)} failures", flush=True)
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
