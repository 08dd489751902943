"""Benchmark of physim.lattice: sparse solve + in situ adjoint on 10^3 - 10^5 node lattices.

For triangular lattices of about 10^3, 10^4 and 10^5 nodes (top row pinned,
random stiffnesses, a load on every bottom node, an MSE loss on 11 bottom
nodes) it measures, in one run:

* ``solve``: assembly (Numba, cached pattern) + sparse factorisation + solve;
* ``adjoint``: the adjoint solve with the forward factorisation + the
  elongation products (the gradient with respect to every stiffness);
* ``ratio`` = (solve + adjoint) / solve (target <= 1.3);
* speed-up against a dense numpy implementation of the same method (dense
  K = C^T diag(k) C, ``numpy.linalg.solve`` forward and adjoint) — measured
  where the dense matrix fits (10^3 nodes), extrapolated as O(N^3) from that
  measurement above (marked ``~``);
* speed-up against finite differences: one extra solve per bond, so FD costs
  (m + 1) solves; the per-solve time is measured, the FD total extrapolated
  (marked ``~``);
* batch of 100 load cases in one call (one factorisation) against 100
  separate solves (measured up to 10^4 nodes; at 10^5 nodes 10 separate
  solves are timed and scaled by 10, marked ``~``).

Usage: ``python scenarios/benchmarks/lattice.py [--quick]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from physim.lattice import adjoint, mse_loss, solve, triangular_lattice


def timeit(fn, *args, repeat=3):
    """Best wall time of ``repeat`` calls of ``fn(*args)`` and the last result."""
    best = np.inf
    out = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn(*args)
        best = min(best, time.perf_counter() - t0)
    return best, out


def problem(side, rng):
    net = triangular_lattice([side] * side, 16e-3, fixed=np.arange(side))
    k = rng.uniform(103.125, 171.875, net.n_bonds)
    f = np.zeros((net.n_nodes, 2))
    bottom = np.arange(net.n_nodes - side, net.n_nodes)
    f[bottom, 1] = -0.0098
    outs = bottom[np.linspace(0, side - 1, 11).round().astype(int)]
    outputs = np.column_stack([outs, np.ones_like(outs)])
    return net, k, f, outputs


def dense_method(net, k, f, outputs):
    """The same method with dense numpy linear algebra: dense K, two dense solves."""
    C = net.compatibility_matrix().toarray()[:, net.free_dofs]
    K = C.T @ (k[:, None] * C)
    u = np.zeros(net.n_nodes * 2)
    u[net.free_dofs] = np.linalg.solve(K, f.ravel()[net.free_dofs])
    _, g = mse_loss(u.reshape(-1, 2), outputs, np.zeros(len(outputs)), scale=1e3)
    lam = np.linalg.solve(K, g.ravel()[net.free_dofs])
    return -(C @ lam) * (C @ u[net.free_dofs])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes only (seconds)")
    args = p.parse_args(argv)
    sides = [10, 32] if args.quick else [32, 100, 316]
    n_batch = 10 if args.quick else 100
    rng = np.random.default_rng(0)
    # warm the Numba cache / JIT on a tiny problem
    net, k, f, outputs = problem(4, rng)
    adjoint(solve(net, k, f), np.ones_like(f))
    dense_ref = None  # (n_free, seconds) of the measured dense run
    rows = []
    for side in sides:
        net, k, f, outputs = problem(side, rng)
        solve(net, k, f)  # builds and caches the sparsity pattern, checks rigidity once
        t_solve, eq = timeit(solve, net, k, f)
        _, g = mse_loss(eq.displacements, outputs, np.zeros(len(outputs)), scale=1e3)
        t_adj, grad = timeit(adjoint, eq, g)
        ratio = (t_solve + t_adj) / t_solve
        nf = net.n_free
        if nf <= 2500:
            t_dense, gd = timeit(dense_method, net, k, f, outputs, repeat=2)
            err = np.abs(gd - grad.stiffness).max() / np.abs(grad.stiffness).max()
            if err > 1e-6:
                raise RuntimeError(f"dense and sparse gradients differ: {err:.2e}")
            dense_ref = (nf, t_dense)
            dense_s = f"{t_dense / (t_solve + t_adj):.0f}x"
        elif dense_ref is not None:
            t_dense = dense_ref[1] * (nf / dense_ref[0]) ** 3
            dense_s = f"~{t_dense / (t_solve + t_adj):.0f}x"
        else:
            dense_s = "n/a"
        fd_s = f"~{(net.n_bonds + 1) * t_solve / (t_solve + t_adj):.0f}x"
        F = np.repeat(f[None], n_batch, axis=0) * rng.uniform(0.5, 1.5, (n_batch, 1, 1))
        t_batch, _ = timeit(solve, net, k, F, repeat=1)
        n_sep = n_batch if nf < 1e5 else n_batch // 10
        t0 = time.perf_counter()
        for b in range(n_sep):
            solve(net, k, F[b])
        t_sep = (time.perf_counter() - t0) * (n_batch / n_sep)
        sep_mark = "" if n_sep == n_batch else "~"
        rows.append(
            (net.n_nodes, net.n_bonds, t_solve, t_adj, ratio, dense_s, fd_s, t_batch, t_sep, sep_mark)
        )
        print(f"  measured {net.n_nodes} nodes", flush=True)
    print()
    print(
        f"| nodes | bonds | solve [s] | adjoint [s] | (solve+adjoint)/solve | vs dense numpy | "
        f"vs finite differences | batch of {n_batch} [s] | {n_batch} separate [s] | batch speed-up |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n, m, ts, ta, r, ds, fs, tb, tsep, mark in rows:
        print(
            f"| {n:,} | {m:,} | {ts:.4f} | {ta:.4f} | {r:.2f} | {ds} | {fs} | {tb:.3f} | "
            f"{mark}{tsep:.2f} | {mark}{tsep / tb:.1f}x |"
        )
    print(
        "\n~ = extrapolated: dense O(N^3) from the measured 10^3-node dense run; finite differences "
        "= (m + 1) x the measured solve time; separate solves at 10^5 nodes = 10 x 10 timed solves."
    )


if __name__ == "__main__":
    main()
