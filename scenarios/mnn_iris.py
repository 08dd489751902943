"""Mechanical neural network, classification: Iris flowers on a 39-node triangular lattice (10 seeds).

After Li & Mao (2024): the four Iris features (min-max scaled on the training
split, plus 0.05) become downward forces of up to 0.103 N (about 10 g) on four
input nodes; the class is the output node with the largest horizontal
displacement |u_x| among three output nodes, trained with the paper's loss
(p_j = |u_j| / sum |u|, cross-entropy) by minibatch Adam (batch 16, lr 0.1)
through the in situ adjoint, bar widths bounded to [1.5, 2.5] mm by the
Bounded transform. 70/30 split, 100 epochs, 10 seeds (--quick: 2 seeds, 20
epochs). Reports mean +/- std train and test accuracy (paper: 0.950 train,
0.964 test).

Network: not the paper's 14-node lattice but a 39-node, 93-bond triangular
patch (rows of 7, 6, 7, 6, 7, 6 nodes, 16 mm bars, top-row corners 0 and 6
pinned), inputs at nodes (17, 32, 38, 26), outputs at nodes (24, 4, 10).
The placement was the second best of 40 random ones ranked by training
accuracy on seeds 100-101 (40 epochs); on ten fresh splits (seeds 200-209,
100 epochs) it reached 0.773 train / 0.740 test against 0.698 / 0.698 for
the 14-node network with its best placement (inputs 5, 8, 12, 13; outputs
7, 9, 11).

Why not 0.95: a linear network maps the four input forces to the outputs
linearly, u_out = A(k) x, so the classifier is argmax_j |(A x)_j| whatever
the lattice, with no bias independent of the features. For every seed the
scenario also fits an unconstrained 3 x 4 matrix A to the same loss on the
same training split (``linear_map_*`` keys): the loss-optimal linear map
reaches 0.748 train / 0.738 test over the 10 seeds, and the best
argmax |A x| found by sharpening the loss towards the 0-1 loss reaches only
0.846 train (0.807 test); with a free bias column it would reach 0.99. The
lattice, whose A is further limited by the 1.67 stiffness contrast, lands
at 0.78 train; widening the width range to a contrast of 500 does not help
the 14-node network (0.69 train, 2 seeds), nor does a constant extra weight at a
fifth node within the paper's contrast. The paper's numbers need something
this linear readout lacks.
"""

import numpy as np

from physim.lattice import (
    PAPER,
    LatticeObjective,
    accuracy,
    classifier_loss,
    load_iris,
    solve,
    stiffness_from_width,
    stiffness_transform,
    train_adam,
    triangular_lattice,
)
from physim.lattice.plotting import plot_network, write_network
from physim.scenario import ScenarioContext, scenario_main

ROWS = (7, 6, 7, 6, 7, 6)
PINNED = [0, 6]
INPUTS = [17, 32, 38, 26]
OUTPUTS = [[24, 0], [4, 0], [10, 0]]
F_SCALE = 0.098  # N per unit scaled feature
NETWORK = "triangular_lattice(rows=(7, 6, 7, 6, 7, 6), spacing=16 mm, pinned nodes 0 and 6)"


def make_network():
    """The 39-node, 93-bond triangular patch used for Iris."""
    return triangular_lattice(ROWS, PAPER["spacing"], fixed=PINNED)


def linear_map_ceiling(xs, y, n_classes, restarts, seed):
    """Unconstrained linear map A (k, 4) minimising the same cross-entropy.

    ``p_j = |(A x)_j| / sum_l |(A x)_l|`` with the encoded features ``x``;
    BFGS from ``restarts`` random starts, the lowest loss kept. A linear
    lattice realises some A(k), so this is what the loss can give any
    linear network with this readout and encoding.
    """
    from scipy.optimize import minimize

    n, m = xs.shape
    rows = np.arange(n)

    def fun(a):
        v = xs @ a.reshape(n_classes, m).T
        av = np.maximum(np.abs(v), 1e-300)
        s = av.sum(axis=1)
        ac = av[rows, y]
        dv = np.sign(v) / s[:, None]
        dv[rows, y] -= np.sign(v[rows, y]) / ac
        return float(np.mean(np.log(s) - np.log(ac))), ((dv / n).T @ xs).ravel()

    rng = np.random.default_rng(seed)
    best = None
    for _ in range(restarts):
        r = minimize(fun, rng.normal(size=n_classes * m), jac=True, method="BFGS")
        if best is None or r.fun < best.fun:
            best = r
    return best.x.reshape(n_classes, m)


def encode(X, lo, hi):
    return np.clip((X - lo) / (hi - lo), 0.0, None) + 0.05


def make_forces(X, lo, hi, n_nodes):
    F = np.zeros((X.shape[0], n_nodes, 2))
    F[:, INPUTS, 1] = -F_SCALE * encode(X, lo, hi)
    return F


def train_one(net, X, y, seed, epochs, lr, restarts):
    rng = np.random.default_rng(seed)
    perm = rng.permutation(X.shape[0])
    n_tr = int(round(0.7 * X.shape[0]))
    tr, te = perm[:n_tr], perm[n_tr:]
    lo, hi = X[tr].min(0), X[tr].max(0)
    F = make_forces(X, lo, hi, net.n_nodes)
    transform = stiffness_transform()

    def loss(u, idx):
        return classifier_loss(u, OUTPUTS, y[tr][idx])

    obj = LatticeObjective(net, F[tr], loss, transform)
    accs = []

    def cb(r):
        accs.append(accuracy(net, transform.forward(r.x), F[tr], y[tr], OUTPUTS))

    z0 = transform.inverse(np.full(net.n_bonds, stiffness_from_width(2e-3)))
    res = train_adam(obj, z0, epochs=epochs, batch_size=16, lr=lr, seed=seed, callback=cb)
    k = res.stiffness
    xs = encode(X, lo, hi)
    A = linear_map_ceiling(xs[tr], y[tr], len(OUTPUTS), restarts, seed)
    pred = np.argmax(np.abs(xs @ A.T), axis=1)
    return {
        "linear_map_train": float(np.mean(pred[tr] == y[tr])),
        "linear_map_test": float(np.mean(pred[te] == y[te])),
        "train": accuracy(net, k, F[tr], y[tr], OUTPUTS),
        "test": accuracy(net, k, F[te], y[te], OUTPUTS),
        "loss": [h["fun"] for h in res.history],
        "train_acc_curve": accs,
        "stiffness": k,
        "F_example": F[te[0]],
    }


def run(ctx: ScenarioContext) -> dict:
    X, y = load_iris()
    net = make_network()
    n_seeds, epochs, restarts = (2, 20, 3) if ctx.quick else (10, 100, 10)
    lr = 0.1
    runs = []
    for s in range(n_seeds):
        r = train_one(net, X, y, ctx.seed + s, epochs, lr, restarts)
        ctx.log(
            f"seed {ctx.seed + s}: train accuracy {r['train']:.3f}, test accuracy {r['test']:.3f} "
            f"(loss-optimal linear map: {r['linear_map_train']:.3f} / {r['linear_map_test']:.3f})"
        )
        runs.append(r)
    tr = np.array([r["train"] for r in runs])
    te = np.array([r["test"] for r in runs])
    ltr = np.array([r["linear_map_train"] for r in runs])
    lte = np.array([r["linear_map_test"] for r in runs])
    ctx.log(
        f"train {tr.mean():.3f} +/- {tr.std():.3f}, test {te.mean():.3f} +/- {te.std():.3f} "
        f"(paper: 0.950 / 0.964); loss-optimal linear map {ltr.mean():.3f} / {lte.mean():.3f}"
    )
    best = runs[int(np.argmax(te))]
    eq = solve(net, best["stiffness"], best["F_example"])
    write_network(
        ctx.path("lattice_trained.vtu"), net, best["stiffness"], eq.displacements, tension=eq.tensions
    )
    if ctx.plots:
        from physim import viz

        t = stiffness_transform()
        plot_network(
            ctx.path("lattice_trained.png"),
            net,
            best["stiffness"],
            eq.displacements,
            clim=(t.lower.item(), t.upper.item()),
            title="Iris MNN, 39-node lattice (best seed), one test flower",
            loads=INPUTS,
            outputs=[o[0] for o in OUTPUTS],
        )
        fig, (a1, a2) = viz.figure(1, 2, figsize=(10, 4))
        for i, r in enumerate(runs):
            a1.plot(r["loss"], color="C0", alpha=0.5, label="minibatch loss" if i == 0 else None)
            a2.plot(
                np.arange(1, len(r["train_acc_curve"]) + 1),
                r["train_acc_curve"],
                color="C1",
                alpha=0.5,
                label="train accuracy" if i == 0 else None,
            )
        a1.set_xlabel("epoch")
        a1.set_ylabel("cross-entropy")
        a2.set_xlabel("epoch")
        a2.set_ylabel("accuracy")
        a2.axhline(0.95, color="k", ls=":", label="paper train 0.950")
        for a in (a1, a2):
            a.grid(alpha=0.3)
            a.legend()
        viz.save_figure(fig, ctx.path("curves.png"))
    return {
        "train_accuracy_mean": float(tr.mean()),
        "train_accuracy_std": float(tr.std()),
        "test_accuracy_mean": float(te.mean()),
        "test_accuracy_std": float(te.std()),
        "train_accuracy": tr,
        "test_accuracy": te,
        "linear_map_train_accuracy_mean": float(ltr.mean()),
        "linear_map_test_accuracy_mean": float(lte.mean()),
        "paper_train_accuracy": 0.950,
        "paper_test_accuracy": 0.964,
        "n_seeds": n_seeds,
        "epochs": epochs,
        "batch_size": 16,
        "learning_rate": lr,
        "network": NETWORK,
        "n_nodes": net.n_nodes,
        "n_bonds": net.n_bonds,
        "input_nodes": INPUTS,
        "output_nodes": [o[0] for o in OUTPUTS],
    }


if __name__ == "__main__":
    scenario_main(run, __doc__)
