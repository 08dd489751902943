"""Mechanical neural network retraining: task switching (Iris -> regression -> Iris) and damage.

After Li & Mao (2024): the 14-node lattice is trained on Iris classification
(set-up of ``mnn_iris``), then retrained on the regression task of
``mnn_regression`` starting from the Iris stiffnesses, then back on Iris.
Then it is damaged: bonds are removed at random, skipping any whose removal
would create a floppy mode (checked with ``floppy_modes``), and the damaged
network is retrained. Reports accuracy (train/test) before switching, after
switching back, before damage, right after damage and after retraining, and
the regression loss reached in between.
"""

import numpy as np

from physim.lattice import (
    LatticeObjective,
    accuracy,
    classifier_loss,
    floppy_modes,
    load_iris,
    mse_loss,
    paper_network,
    remove_bonds,
    stiffness_from_width,
    stiffness_transform,
    train_adam,
)
from physim.lattice.plotting import plot_network, write_network
from physim.scenario import ScenarioContext, scenario_main

IRIS_INPUTS = [5, 8, 12, 13]
IRIS_OUTPUTS = [[7, 0], [9, 0], [11, 0]]
REG_LOAD, REG_OUTPUTS, REG_SLOPES = 10, [[12, 1], [13, 1]], np.array([9.0, 12.0])


def iris_task(n_nodes, seed):
    X, y = load_iris()
    perm = np.random.default_rng(seed).permutation(X.shape[0])
    tr, te = perm[:105], perm[105:]
    lo, hi = X[tr].min(0), X[tr].max(0)
    F = np.zeros((X.shape[0], n_nodes, 2))
    F[:, IRIS_INPUTS, 1] = -0.098 * (np.clip((X - lo) / (hi - lo), 0, None) + 0.05)
    return F[tr], y[tr], F[te], y[te]


def train_iris(net, k, task, epochs, seed):
    Ftr, ytr, _, _ = task
    t = stiffness_transform()
    obj = LatticeObjective(net, Ftr, lambda u, idx: classifier_loss(u, IRIS_OUTPUTS, ytr[idx]), t)
    res = train_adam(
        obj,
        t.inverse(np.clip(k, t.lower + 1e-6, t.upper - 1e-6)),
        epochs=epochs,
        batch_size=16,
        lr=0.1,
        seed=seed,
    )
    return res.stiffness, [h["fun"] for h in res.history]


def iris_acc(net, k, task):
    Ftr, ytr, Fte, yte = task
    return accuracy(net, k, Ftr, ytr, IRIS_OUTPUTS), accuracy(net, k, Fte, yte, IRIS_OUTPUTS)


def train_regression(net, k, epochs, seed):
    rng = np.random.default_rng(seed)
    F = rng.uniform(-0.196, 0.196, 40)
    y = F[:, None] * REG_SLOPES
    loads = np.zeros((40, net.n_nodes, 2))
    loads[:, REG_LOAD, 1] = F
    t = stiffness_transform()
    obj = LatticeObjective(net, loads, lambda u, idx: mse_loss(u, REG_OUTPUTS, y[idx], scale=1e3), t)
    res = train_adam(
        obj,
        t.inverse(np.clip(k, t.lower + 1e-6, t.upper - 1e-6)),
        epochs=epochs,
        batch_size=8,
        lr=0.05,
        seed=seed,
    )
    return res.stiffness, [h["fun"] for h in res.history]


def run(ctx: ScenarioContext) -> dict:
    net = paper_network()
    task = iris_task(net.n_nodes, ctx.seed)
    e_iris, e_reg, n_cut = (15, 15, 2) if ctx.quick else (100, 150, 2)
    k = np.full(net.n_bonds, stiffness_from_width(2e-3))
    curves = {}
    k, curves["iris 1"] = train_iris(net, k, task, e_iris, ctx.seed)
    acc1 = iris_acc(net, k, task)
    k, curves["regression"] = train_regression(net, k, e_reg, ctx.seed)
    acc_reg = iris_acc(net, k, task)
    k, curves["iris 2"] = train_iris(net, k, task, e_iris, ctx.seed + 1)
    acc2 = iris_acc(net, k, task)
    ctx.log(f"Iris {acc1}, after regression {acc_reg}, after switching back {acc2}")

    # damage: random bonds, skipping any that would make the network floppy
    rng = np.random.default_rng(ctx.seed + 7)
    damaged, kd, removed, skipped = net, k.copy(), [], []
    for b in rng.permutation(net.n_bonds):
        if len(removed) == n_cut:
            break
        # index of original bond b in the current (damaged) numbering
        cur = np.flatnonzero((damaged.bonds == net.bonds[b]).all(axis=1))[0]
        trial = remove_bonds(damaged, [cur])
        if floppy_modes(trial).count:
            skipped.append(int(b))
            continue
        kd = np.delete(kd, cur)
        damaged = trial
        removed.append(int(b))
    acc_damaged = iris_acc(damaged, kd, task)
    kr, curves["iris after damage"] = train_iris(damaged, kd, task, e_iris, ctx.seed + 2)
    acc_retrained = iris_acc(damaged, kr, task)
    ctx.log(
        f"removed bonds {removed} (skipped {skipped} as floppy); accuracy after damage "
        f"{acc_damaged}, after retraining {acc_retrained}"
    )

    write_network(ctx.path("lattice_damaged_retrained.vtu"), damaged, kr)
    if ctx.plots:
        from physim import viz
        from physim.lattice import solve

        t = stiffness_transform()
        f = task[0][0]
        plot_network(
            ctx.path("lattice_before_damage.png"),
            net,
            k,
            solve(net, k, f).displacements,
            clim=(t.lower.item(), t.upper.item()),
            title="after Iris -> regression -> Iris",
            loads=IRIS_INPUTS,
            outputs=[o[0] for o in IRIS_OUTPUTS],
        )
        plot_network(
            ctx.path("lattice_damaged_retrained.png"),
            damaged,
            kr,
            solve(damaged, kr, f).displacements,
            clim=(t.lower.item(), t.upper.item()),
            title=f"damaged ({len(removed)} bonds removed), retrained",
            loads=IRIS_INPUTS,
            outputs=[o[0] for o in IRIS_OUTPUTS],
        )
        fig, axes = viz.figure(1, len(curves), figsize=(3.2 * len(curves), 3.2))
        for ax, (name, c) in zip(axes, curves.items()):
            ax.plot(c)
            ax.set_title(name, fontsize=9)
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
        axes[0].set_ylabel("loss")
        viz.save_figure(fig, ctx.path("curves.png"))
    return {
        "iris_accuracy_initial": {"train": acc1[0], "test": acc1[1]},
        "iris_accuracy_after_regression": {"train": acc_reg[0], "test": acc_reg[1]},
        "regression_final_loss_mm2": curves["regression"][-1],
        "iris_accuracy_after_switch_back": {"train": acc2[0], "test": acc2[1]},
        "accuracy_before_damage": {"train": acc2[0], "test": acc2[1]},
        "accuracy_after_damage": {"train": acc_damaged[0], "test": acc_damaged[1]},
        "accuracy_after_retraining": {"train": acc_retrained[0], "test": acc_retrained[1]},
        "removed_bonds": removed,
        "skipped_floppy_bonds": skipped,
        "epochs_per_stage": {"iris": e_iris, "regression": e_reg},
    }


if __name__ == "__main__":
    scenario_main(run, __doc__)
