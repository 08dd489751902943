"""Mechanical neural network, classification: Iris flowers on the 14-node lattice (10 seeds).

After Li & Mao (2024): the four Iris features (min-max scaled on the training
split, plus 0.05) become downward forces of up to 0.103 N (about 10 g) on four
input nodes of the 14-node lattice (top corners pinned, bar widths in
[1.5, 2.5] mm); the class is the output node with the largest horizontal
displacement |u_x| among three output nodes, trained with the paper's loss
(p_j = |u_j| / sum |u|, cross-entropy) by minibatch Adam (batch 16) through
the in situ adjoint. 70/30 split, 100 epochs, 10 seeds (--quick: 2 seeds,
20 epochs). Reports mean +/- std train and test accuracy (paper: 0.950 train,
0.964 test).

Input nodes (5, 8, 12, 13) and output nodes (7, 9, 11) were chosen among 88
random placements (8 trained with L-BFGS, 80 with 40 epochs of Adam) by their
training accuracy on seed 0's training split (best 0.75; no placement tried
exceeded it); min-max scaling + 0.05 beat x / max(x) and min-max + 0.5 on
the same split. With the bar widths bounded to [1.5, 2.5] mm (stiffness
contrast 1.67) the response stays close to the untrained one and this
14-node network does not reach the paper's accuracy.
"""

import numpy as np

from physim.lattice import (
    LatticeObjective,
    accuracy,
    classifier_loss,
    load_iris,
    paper_network,
    solve,
    stiffness_from_width,
    stiffness_transform,
    train_adam,
)
from physim.lattice.plotting import plot_network, write_network
from physim.scenario import ScenarioContext, scenario_main

INPUTS = [5, 8, 12, 13]
OUTPUTS = [[7, 0], [9, 0], [11, 0]]
F_SCALE = 0.098  # N per unit scaled feature


def make_forces(X, lo, hi, n_nodes):
    xs = np.clip((X - lo) / (hi - lo), 0.0, None) + 0.05
    F = np.zeros((X.shape[0], n_nodes, 2))
    F[:, INPUTS, 1] = -F_SCALE * xs
    return F


def train_one(net, X, y, seed, epochs, lr):
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
    return {
        "train": accuracy(net, k, F[tr], y[tr], OUTPUTS),
        "test": accuracy(net, k, F[te], y[te], OUTPUTS),
        "loss": [h["fun"] for h in res.history],
        "train_acc_curve": accs,
        "stiffness": k,
        "F_example": F[te[0]],
    }


def run(ctx: ScenarioContext) -> dict:
    X, y = load_iris()
    net = paper_network()
    n_seeds, epochs = (2, 20) if ctx.quick else (10, 100)
    lr = 0.1
    runs = []
    for s in range(n_seeds):
        r = train_one(net, X, y, ctx.seed + s, epochs, lr)
        ctx.log(f"seed {ctx.seed + s}: train accuracy {r['train']:.3f}, test accuracy {r['test']:.3f}")
        runs.append(r)
    tr = np.array([r["train"] for r in runs])
    te = np.array([r["test"] for r in runs])
    ctx.log(
        f"train {tr.mean():.3f} +/- {tr.std():.3f}, test {te.mean():.3f} +/- {te.std():.3f} "
        f"(paper: 0.950 / 0.964)"
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
            title="Iris MNN (best seed), one test flower",
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
        "paper_train_accuracy": 0.950,
        "paper_test_accuracy": 0.964,
        "n_seeds": n_seeds,
        "epochs": epochs,
        "batch_size": 16,
        "learning_rate": lr,
        "input_nodes": INPUTS,
        "output_nodes": [o[0] for o in OUTPUTS],
    }


if __name__ == "__main__":
    scenario_main(run, __doc__)
