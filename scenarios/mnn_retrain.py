"""Mechanical neural network retraining: task switching (Iris -> regression -> Iris) and damage.

After Li & Mao (2024), on the 39-node, 93-bond triangular lattice of
``mnn_iris`` (rows 7, 6, 7, 6, 7, 6, top corners pinned, bar widths in
[1.5, 2.5] mm): the network is trained on Iris classification (set-up of
``mnn_iris``: inputs 17, 32, 38, 26, outputs |u_x| of 24, 4, 10), then
retrained on a regression task starting from the Iris stiffnesses (vertical
force in +/-0.196 N on node 29, the middle of the fifth row; target slopes
12 and 16 mm/N for the vertical displacement of bottom nodes 35 and 36,
whose untrained slope is 14.0 mm/N: the same asymmetry as the paper's 9 and
12 mm/N around 10.7), then back on Iris. Then it is damaged: 2 bonds are
removed at random, skipping any whose removal would create a floppy mode
(checked with ``floppy_modes``), and the damaged network is retrained; this
is repeated for 5 independent damage draws (--quick: 1) and the accuracies
averaged. Removing 6 bonds instead (the same 7 % of the bonds as 2 of the
paper's 28) often cuts a bond at an output node: that output becomes several
times more compliant than the others, the network then predicts one class,
and retraining cannot undo it (5 draws: 0.45 train after damage, 0.52 after
retraining).
Each retraining starts from the current stiffnesses pulled 2 % of the range
inside the bounds, so that the Bounded sigmoid is not saturated (a bar at a
bound otherwise needs tens of Adam steps before it can move). Reports
accuracy (train/test) before switching, after switching back, before damage,
right after damage and after retraining, and the regression loss reached in
between.

The 14-node lattice was used before: its single damage draw removed bonds
7-11 and 11-13 at output node 11, which became ten times more compliant
than the other outputs; no stiffness within the 1.67 contrast compensates
that, and retraining recovered only 0.31 -> 0.39 train accuracy. In the
larger lattice a 2-bond cut rarely isolates an output.
"""

import numpy as np

from physim.lattice import (
    PAPER,
    LatticeObjective,
    accuracy,
    classifier_loss,
    floppy_modes,
    load_iris,
    mse_loss,
    remove_bonds,
    stiffness_from_width,
    stiffness_transform,
    train_adam,
    triangular_lattice,
)
from physim.lattice.plotting import plot_network, write_network
from physim.scenario import ScenarioContext, scenario_main

ROWS, PINNED = (7, 6, 7, 6, 7, 6), [0, 6]
IRIS_INPUTS = [17, 32, 38, 26]
IRIS_OUTPUTS = [[24, 0], [4, 0], [10, 0]]
REG_LOAD, REG_OUTPUTS, REG_SLOPES = 29, [[35, 1], [36, 1]], np.array([12.0, 16.0])
NETWORK = "triangular_lattice(rows=(7, 6, 7, 6, 7, 6), spacing=16 mm, pinned nodes 0 and 6)"
MARGIN = 0.02  # restart point pulled this fraction of the stiffness range inside the bounds


def z_start(t, k):
    m = MARGIN * (t.upper - t.lower)
    return t.inverse(np.clip(k, t.lower + m, t.upper - m))


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
        z_start(t, k),
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
        z_start(t, k),
        epochs=epochs,
        batch_size=8,
        lr=0.05,
        seed=seed,
    )
    return res.stiffness, [h["fun"] for h in res.history]


def damage(net, k, n_cut, rng):
    """Remove ``n_cut`` random bonds, skipping any whose removal makes the network floppy."""
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
    return damaged, kd, removed, skipped


def run(ctx: ScenarioContext) -> dict:
    net = triangular_lattice(ROWS, PAPER["spacing"], fixed=PINNED)
    task = iris_task(net.n_nodes, ctx.seed)
    e_iris, e_reg, n_cut, n_draws = (15, 15, 2, 1) if ctx.quick else (100, 150, 2, 5)
    k = np.full(net.n_bonds, stiffness_from_width(2e-3))
    curves = {}
    k, curves["iris 1"] = train_iris(net, k, task, e_iris, ctx.seed)
    acc1 = iris_acc(net, k, task)
    k, curves["regression"] = train_regression(net, k, e_reg, ctx.seed)
    acc_reg = iris_acc(net, k, task)
    k, curves["iris 2"] = train_iris(net, k, task, e_iris, ctx.seed + 1)
    acc2 = iris_acc(net, k, task)
    ctx.log(f"Iris {acc1}, after regression {acc_reg}, after switching back {acc2}")

    draws = []
    for i in range(n_draws):
        rng = np.random.default_rng(ctx.seed + 7 + i)
        damaged, kd, removed, skipped = damage(net, k, n_cut, rng)
        acc_d = iris_acc(damaged, kd, task)
        kr, c = train_iris(damaged, kd, task, e_iris, ctx.seed + 2 + i)
        acc_r = iris_acc(damaged, kr, task)
        ctx.log(
            f"damage draw {i}: removed bonds {removed} (skipped {skipped} as floppy); accuracy after "
            f"damage {acc_d}, after retraining {acc_r}"
        )
        io = set(IRIS_INPUTS) | {o[0] for o in IRIS_OUTPUTS}
        draws.append(
            {
                "removed_bonds": removed,
                "touches_input_or_output": bool(io & set(net.bonds[removed].ravel().tolist())),
                "skipped_floppy_bonds": skipped,
                "after_damage": {"train": acc_d[0], "test": acc_d[1]},
                "after_retraining": {"train": acc_r[0], "test": acc_r[1]},
            }
        )
        if i == 0:
            damaged0, kr0, removed0 = damaged, kr, removed
            curves["iris after damage"] = c

    def mean(stage, part):
        return float(np.mean([d[stage][part] for d in draws]))

    acc_damaged = (mean("after_damage", "train"), mean("after_damage", "test"))
    acc_retrained = (mean("after_retraining", "train"), mean("after_retraining", "test"))
    ctx.log(f"mean over {n_draws} damage draws: after damage {acc_damaged}, after retraining {acc_retrained}")
    damaged, kr, removed = damaged0, kr0, removed0

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
            title=f"damaged ({len(removed)} bonds removed, draw 0), retrained",
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
        "damage_draws": draws,
        "n_damage_draws": n_draws,
        "bonds_removed_per_draw": n_cut,
        "network": NETWORK,
        "n_nodes": net.n_nodes,
        "n_bonds": net.n_bonds,
        "epochs_per_stage": {"iris": e_iris, "regression": e_reg},
    }


if __name__ == "__main__":
    scenario_main(run, __doc__)
