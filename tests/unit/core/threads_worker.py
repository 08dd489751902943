"""Each solver called from several threads at once gives the serial result.

Run as ``python threads_worker.py SOLVER``; prints ``OK SOLVER`` and exits 0 when every
concurrent result equals (bit for bit) the result of the same call made serially. Run in a
subprocess by test_threads.py, so that a crash of compiled code under concurrency fails
that test instead of killing the test run.
"""

from __future__ import annotations

import sys
import threading

import numpy as np

N_THREADS = 4
ROUNDS = 3


def _flat(obj, name="r"):
    """name -> array for every numeric array or float of a result (nested results too)."""
    import dataclasses

    out = {}
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind in "biufc":
            out[name] = obj
    elif isinstance(obj, (float, int, np.floating, np.integer)) and not isinstance(obj, bool):
        out[name] = np.asarray(obj)
    elif isinstance(obj, (tuple, list)):
        for i, v in enumerate(obj):
            out.update(_flat(v, f"{name}[{i}]"))
    elif dataclasses.is_dataclass(obj):
        for f in dataclasses.fields(obj):
            if f.name not in ("mesh", "network", "lead_field", "model", "rollout", "time_s"):
                out.update(_flat(getattr(obj, f.name), f"{name}.{f.name}"))
    return out


def lattice_cases():
    import physim.lattice as L

    net = L.triangular_lattice((6, 5), fixed=[0, 5])

    def case(i):
        k = 100.0 + 60.0 * np.random.default_rng(i).random(net.n_bonds)
        f = np.zeros((3, net.n_nodes, 2))
        f[:, -1, 1] = -0.02 * (1 + i + np.arange(3))
        g = np.ones(f.shape) * (i + 1)
        eq = L.solve(net, k, f)
        eqn = L.solve(net, k, f[:1], nonlinear=True, load_steps=2)
        return eq, L.adjoint(eq, g), eqn, L.adjoint(eqn, np.ones_like(eqn.displacements))

    return case


def eikonal_cases():
    import physim.eikonal as K

    mesh = K.box_tet_mesh(6, 6.0, jitter=0.1, seed=2)

    def case(i):
        r = np.random.default_rng(i)
        fib = r.standard_normal((mesh.n_cells, 3))
        D = K.conduction_tensor(fib, 0.6, 0.25)
        act = K.solve(mesh, D, [int(i * 7) % mesh.n_points, 11], [0.0, 1.0 + i])
        return act.times, K.adjoint(act, np.linspace(-1.0, 1.0, mesh.n_points) * (i + 1))

    return case


def ecg_cases():
    import physim.cardiac as C
    from physim.eikonal import box_tet_mesh

    m = box_tet_mesh(6, 12.0, jitter=0.05, seed=3)
    pts, tets = np.array(m.points), np.array(m.cells)
    system = C.standard_12_lead((pts, tets))

    def case(i):
        G = C.intracellular_conductivity(np.tile([1.0, 0.1 * i, 0.0], (len(tets), 1)))
        lf = C.lead_field((pts, tets), system, G)
        phi = (1.5 + 0.2 * i) * np.linalg.norm(pts - pts[i], axis=1)
        e = C.simulate_ecg(lf, phi, n_samples=200)
        lam = np.sin(np.arange(e.signals.size) / (7.0 + i)).reshape(e.signals.shape)
        return lf.weights, e.signals, C.ecg_adjoint(e, lam, conductivity=True)

    return case


def ekf_cases():
    import physim.ekf as F

    beacons = F.Beacons(np.array([[2.0, 1.0], [-1.0, 3.0], [4.0, -2.0], [6.0, 4.0]]), 0.1, 0.05)
    P0 = np.diag([0.1, 0.1, 0.05])
    M = np.diag([0.01, 0.005])
    Q0 = np.eye(3) * 1e-4

    def case(i):
        U = np.tile([1.0, 0.05 * (i + 1)], (60, 1))
        x0 = np.array([0.1 * i, 0.0, 0.1])
        r = F.covariance_rollout(F.Unicycle(0.1), beacons, x0, P0, U, M, Q0)
        g = F.adjoint(r, F.HorizonSum(F.FinalTrace()))
        fr = F.run_filter(F.Unicycle(0.1), beacons, x0, P0, U, M, Q0, n_runs=4, seed=i)
        return r, g, fr

    return case


CASES = {"lattice": lattice_cases, "eikonal": eikonal_cases, "ecg": ecg_cases, "ekf": ekf_cases}


def _work(case, i, start, results, errors):
    try:
        start.wait()
        results[i] = _flat(case(i))
    except BaseException as exc:  # reported by main
        errors.append(f"thread {i}: {type(exc).__name__}: {exc}")


def main(argv):
    name = argv[1]
    case = CASES[name]()
    n_cases = N_THREADS
    serial = [_flat(case(i)) for i in range(n_cases)]
    for rnd in range(ROUNDS):
        results: dict[int, dict] = {}
        errors: list[str] = []
        start = threading.Barrier(N_THREADS)

        # each round a different case order across threads
        order = [(j + rnd) % n_cases for j in range(N_THREADS)]
        threads = [threading.Thread(target=_work, args=(case, i, start, results, errors)) for i in order]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            print("FAIL", *errors, sep="\n")
            return 1
        for i in order:
            want, got = serial[i], results[i]
            if want.keys() != got.keys():
                print(f"FAIL round {rnd} case {i}: fields {sorted(want)} vs {sorted(got)}")
                return 1
            for k in want:
                if want[k].shape != got[k].shape or not np.array_equal(want[k], got[k], equal_nan=True):
                    diff = np.max(np.abs(np.asarray(want[k], float) - np.asarray(got[k], float)))
                    print(
                        f"FAIL round {rnd} case {i}: {k} differs from the serial result (max |diff| {diff:.3g})"
                    )
                    return 1
    import numba

    print(
        f"OK {name} ({len(serial[0])} arrays per case, {N_THREADS} threads x {ROUNDS} rounds, "
        f"numba layer {numba.threading_layer() if _used_parallel() else 'unused'})"
    )
    return 0


def _used_parallel():
    import numba

    try:
        numba.threading_layer()
        return True
    except ValueError:
        return False


if __name__ == "__main__":
    sys.exit(main(sys.argv))
