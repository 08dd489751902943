"""Mechanical neural network, classification: Iris on the paper's 14-node network (10 seeds).

Li & Mao (Nat. Commun. 15, 10528, 2024), their set-up: the 14-node, 28-bond
triangular network (``paper_network()``, top-row corners pinned, bar widths
in [1.5, 2.5] mm, i.e. k in [103.125, 171.875] N/m, starting at 2 mm). The
four Iris features, each divided by its maximum over the whole data set,
become downward forces F = -(x / x_max) 0.005 kg 9.8 m/s^2 on nodes 13, 11,
12, 9 (the paper's 14, 12, 13, 10, 1-based); the outputs are |u_x| of nodes
7, 1, 2 (the paper's 8, 2, 3), p_j = |u_j| / sum |u|, cross-entropy, class =
argmax. Minibatch Adam (batch 16) through the in situ adjoint, with the
exact derivative of the sigmoid width transform; random 70/30 split per
seed (105 / 45 flowers), 10 seeds (--quick: 2 seeds, 3 starts of 5 epochs).

Recipe (``train_classifier``'s defaults): step size 1.0 on a cosine
schedule, 30 epochs, 16 starts (the paper's start plus 15 perturbed ones),
keeping the start with the highest training accuracy. Step size, schedule
and epochs were chosen by 3-fold cross-validation inside the training splits
(scenario ``mnn_iris_tuning``); the test flowers are used only for the
reported test accuracy. The paper's exact recipe (lr 0.1, constant, 100
epochs, one start) is run too and reported as ``paper_recipe_*``.

Reports the per-seed table, mean +/- std train and test accuracy (paper:
0.950 / 0.964), loss and accuracy curves against the published values (loss
1.318 -> 0.652, accuracy at epoch 100), the test confusion matrix summed over
seeds, the trained lattice of the median seed with its predictions on one
test flower of each class, and an STL of that lattice for 3D printing.

Seeds are independent: ``--workers N`` or ``--scheduler ADDRESS`` fans them
out with ``physim.distributed.run_sweep`` (same numbers as the serial run,
which is the default).
"""

import os

import numpy as np

from physim.distributed import run_sweep
from physim.lattice import (
    export_printable,
    feature_forces,
    load_iris,
    paper_network,
    solve,
    stiffness_transform,
    train_classifier,
)
from physim.lattice.plotting import draw_network, magnification, write_network
from physim.scenario import ScenarioContext, scenario_main

INPUTS = [13, 11, 12, 9]  # sepal length, sepal width, petal length, petal width
OUTPUTS = [[7, 0], [1, 0], [2, 0]]  # setosa, versicolor, virginica
CLASSES = ["setosa", "versicolor", "virginica"]
PAPER = {"train": 0.950, "test": 0.964, "loss_first": 1.318, "loss_last": 0.652, "epochs": 100}


def split(seed: int, n: int = 150, n_train: int = 105):
    """Random 70/30 split of seed ``seed``: (train indices, test indices)."""
    perm = np.random.default_rng(seed).permutation(n)
    return perm[:n_train], perm[n_train:]


def train_seed(task: dict) -> dict:
    """Train and evaluate one seed (one split); a picklable function of one task."""
    X, y = load_iris()
    tr, te = split(task["seed"])
    kw = task["recipe"]
    res = train_classifier(
        paper_network(), X[tr], y[tr], INPUTS, OUTPUTS, feature_max=X.max(axis=0), seed=task["seed"], **kw
    )
    return {
        "seed": task["seed"],
        "train": res.accuracy(X[tr], y[tr]),
        "test": res.accuracy(X[te], y[te]),
        "loss": np.asarray(res.history["loss"]),
        "train_curve": np.asarray(res.history["train_accuracy"]),
        "test_curve": res.accuracy_history(X[te], y[te]),
        "confusion_test": res.confusion_matrix(X[te], y[te]),
        "stiffness": np.asarray(res.stiffness),
        "best_restart": res.best_restart,
        "restart_train_accuracy": np.asarray(res.history["restart_train_accuracy"]),
        "n_solves": res.n_solves,
        "seconds": float(np.sum(res.history["restart_seconds"])),
    }


def scheduler(ctx):
    """Serial unless the user asked for workers or a scheduler."""
    if ctx.scheduler is None and ctx.workers is None and not os.environ.get("PHYSIM_SCHEDULER"):
        return "serial"
    return ctx.scheduler


def run(ctx: ScenarioContext) -> dict:
    n_seeds = 2 if ctx.quick else 10
    recipe = {"epochs": 5, "restarts": 3} if ctx.quick else {}
    paper_recipe = {"epochs": 5 if ctx.quick else 100, "lr": 0.1, "lr_schedule": "constant", "restarts": 1}
    seeds = [ctx.seed + s for s in range(n_seeds)]
    tasks = [{"seed": s, "recipe": recipe} for s in seeds] + [
        {"seed": s, "recipe": paper_recipe} for s in seeds
    ]
    sched = scheduler(ctx)
    sweep = run_sweep(train_seed, tasks, scheduler=sched, workers=ctx.workers)
    if sweep.failed:
        raise RuntimeError(f"{len(sweep.failed)} seeds failed: {next(iter(sweep.failed.values()))}")
    runs, paper_runs = sweep.results[:n_seeds], sweep.results[n_seeds:]
    for r, p in zip(runs, paper_runs):
        ctx.log(
            f"seed {r['seed']}: train {r['train']:.3f}, test {r['test']:.3f} (kept start {r['best_restart']}); "
            f"paper recipe: train {p['train']:.3f}, test {p['test']:.3f}"
        )
    tr = np.array([r["train"] for r in runs])
    te = np.array([r["test"] for r in runs])
    ptr = np.array([r["train"] for r in paper_runs])
    pte = np.array([r["test"] for r in paper_runs])
    ctx.log(
        f"train {tr.mean():.3f} +/- {tr.std():.3f}, test {te.mean():.3f} +/- {te.std():.3f} over {n_seeds} seeds "
        f"(paper: 0.950 / 0.964); paper recipe: {ptr.mean():.3f} / {pte.mean():.3f}"
    )
    conf = np.sum([r["confusion_test"] for r in runs], axis=0)
    median = runs[int(np.argsort(te)[len(te) // 2])]
    net = paper_network()
    X, y = load_iris()
    _, te_idx = split(median["seed"])
    export_printable(net, median["stiffness"], ctx.path("lattice_trained.stl"))
    f_all = feature_forces(net, X, INPUTS, feature_max=X.max(axis=0))  # -(x / x_max) 0.049 N
    eq = solve(net, median["stiffness"], f_all[te_idx[0]])
    write_network(
        ctx.path("lattice_trained.vtu"), net, median["stiffness"], eq.displacements, tension=eq.tensions
    )
    if ctx.plots:
        _pictures(ctx, runs, paper_runs, conf, median, f_all, te_idx, X, y)
    return {
        "train_accuracy_mean": float(tr.mean()),
        "train_accuracy_std": float(tr.std()),
        "test_accuracy_mean": float(te.mean()),
        "test_accuracy_std": float(te.std()),
        "per_seed": [
            {"seed": r["seed"], "train": r["train"], "test": r["test"], "kept_start": r["best_restart"]}
            for r in runs
        ],
        "paper_recipe_train_accuracy_mean": float(ptr.mean()),
        "paper_recipe_test_accuracy_mean": float(pte.mean()),
        "paper_recipe_per_seed": [
            {"seed": r["seed"], "train": r["train"], "test": r["test"]} for r in paper_runs
        ],
        "paper_train_accuracy": PAPER["train"],
        "paper_test_accuracy": PAPER["test"],
        "paper_loss_first_last": [PAPER["loss_first"], PAPER["loss_last"]],
        "loss_first_last_mean": [
            float(np.mean([r["loss"][0] for r in runs])),
            float(np.mean([r["loss"][-1] for r in runs])),
        ],
        "confusion_matrix_test": conf,
        "classes": CLASSES,
        "n_seeds": n_seeds,
        "sweep": {
            "n_tasks": sweep.n_tasks,
            "n_workers": sweep.n_workers,
            # where the seeds ran: what scheduler() chose, else run_sweep's default
            "scheduler": sched or os.environ.get("PHYSIM_SCHEDULER") or "embedded",
            "wall_time_s": sweep.wall_time_s,
        },
        "recipe": {
            "lr": 1.0,
            "lr_schedule": "cosine",
            "epochs": 30,
            "restarts": 16,
            "batch_size": 16,
            **recipe,
        },
        "physical_solves_per_seed": int(runs[0]["n_solves"]),
        "network": "paper_network(): 14 nodes, 28 bonds, nodes 0 and 4 pinned",
        "input_nodes": INPUTS,
        "output_nodes": [o[0] for o in OUTPUTS],
        "printable": "lattice_trained.stl (median seed)",
    }


def _pictures(ctx, runs, paper_runs, conf, median, f_all, te_idx, X, y):
    from physim import viz

    # loss and accuracy curves, every seed, with the published values
    fig, (a1, a2) = viz.figure(1, 2, figsize=(11, 4.2), layout="constrained")
    data = {}
    for i, r in enumerate(runs):
        ep = np.arange(1, len(r["loss"]) + 1)
        a1.plot(
            ep, r["loss"], color="C0", alpha=0.35, lw=1, label="this recipe, each seed" if i == 0 else None
        )
        a2.plot(
            ep, r["train_curve"], color="C0", alpha=0.3, lw=1, label="train, each seed" if i == 0 else None
        )
        a2.plot(ep, r["test_curve"], color="C1", alpha=0.3, lw=1, label="test, each seed" if i == 0 else None)
        data[f"epoch seed {r['seed']}"] = ep
        data[f"loss seed {r['seed']}"] = r["loss"]
        data[f"train accuracy seed {r['seed']}"] = r["train_curve"]
        data[f"test accuracy seed {r['seed']}"] = r["test_curve"]
    ep = np.arange(1, len(runs[0]["loss"]) + 1)
    a2.plot(
        ep, np.mean([r["train_curve"] for r in runs], 0), color="C0", lw=2.5, label="train, mean of seeds"
    )
    a2.plot(ep, np.mean([r["test_curve"] for r in runs], 0), color="C1", lw=2.5, label="test, mean of seeds")
    pep = np.arange(1, len(paper_runs[0]["loss"]) + 1)
    a1.plot(
        pep,
        np.mean([r["loss"] for r in paper_runs], 0),
        color="C2",
        lw=2,
        label="paper recipe (lr 0.1, 1 start), mean",
    )
    a1.plot(
        [1, PAPER["epochs"]],
        [PAPER["loss_first"], PAPER["loss_last"]],
        "k*",
        ms=11,
        label="published (epoch 1, 100)",
    )
    a2.plot([PAPER["epochs"]], [PAPER["train"]], "k*", ms=11, label="published train 0.950")
    a2.plot([PAPER["epochs"]], [PAPER["test"]], "kX", ms=9, label="published test 0.964")
    a2.axhline(0.95, color="0.3", ls=":", lw=1, label="target 0.95")
    a1.set(
        xlabel="epoch", ylabel="cross-entropy (mean over the epoch's batches) [nats]", title="training loss"
    )
    a2.set(
        xlabel="epoch",
        ylabel="accuracy (fraction of flowers)",
        title="accuracy after each epoch",
        ylim=(0.2, 1.02),
    )
    for a in (a1, a2):
        viz.integer_ticks(a)
        a.grid(alpha=0.3)
        a.legend(fontsize=7)
    data["paper recipe epoch"] = pep
    data["paper recipe loss, mean"] = np.mean([r["loss"] for r in paper_runs], 0)
    viz.save_figure(fig, ctx.path("curves.png"), data=data)

    # confusion matrix of the test flowers, all seeds
    fig, ax = viz.figure(figsize=(5, 4.4), layout="constrained")
    im = ax.imshow(conf, cmap="Blues")
    for i in range(3):
        for j in range(3):
            ax.text(
                j,
                i,
                str(conf[i, j]),
                ha="center",
                va="center",
                color="white" if conf[i, j] > conf.max() / 2 else "black",
            )
    ax.set_xticks(range(3), CLASSES)
    ax.set_yticks(range(3), CLASSES)
    ax.set(xlabel="predicted class", ylabel="true class")
    ax.set_title(
        f"test flowers, {len(runs)} seeds x 45 (accuracy {np.trace(conf) / conf.sum():.3f})", fontsize=10
    )
    fig.colorbar(im, ax=ax, label="flowers")
    viz.save_figure(
        fig,
        ctx.path("confusion_matrix.png"),
        data={"true class": CLASSES, **{f"predicted {c}": conf[:, j] for j, c in enumerate(CLASSES)}},
    )

    # the median seed's lattice on one test flower of each class, with its prediction
    net = paper_network()
    k = median["stiffness"]
    t = stiffness_transform()
    fig, axes = viz.figure(1, 3, figsize=(15, 6.0), layout="constrained")
    handles = []
    flowers = [int(te_idx[np.flatnonzero(y[te_idx] == c)[0]]) for c in range(3)]
    us = [solve(net, k, f_all[s]).displacements for s in flowers]
    scale = magnification(net, np.array(us))
    for c, (ax, s, u) in enumerate(zip(axes, flowers, us)):
        v = np.abs(u[[o[0] for o in OUTPUTS], 0]) * 1e6
        pred = int(np.argmax(v))
        labels = {o[0]: CLASSES[j] for j, o in enumerate(OUTPUTS)}
        mappable, handles = draw_network(
            ax, net, k, u, scale=scale, clim=(t.lower.item(), t.upper.item()), loads=INPUTS,
            outputs=[o[0] for o in OUTPUTS], highlight=[OUTPUTS[pred][0]], node_labels=labels,
        )  # fmt: skip
        ok = "correct" if pred == c else "wrong"
        ax.set_title(f"test flower {s}: true {CLASSES[c]}, predicted {CLASSES[pred]} ({ok})", fontsize=10)
        readout = ", ".join(f"{CLASSES[j]} {v[j]:.1f}" for j in range(3))
        ax.text(
            0.5,
            0.02,
            f"|u_x| at the outputs [µm]: {readout}",
            transform=ax.transAxes,
            ha="center",
            fontsize=8,
        )
    # the same limits on the three panels: equal-aspect boxes of one size, titles on one line
    lims = np.array([[*ax.get_xlim(), *ax.get_ylim()] for ax in axes])
    for ax in axes:
        ax.set_xlim(lims[:, 0].min(), lims[:, 1].max())
        ax.set_ylim(lims[:, 2].min(), lims[:, 3].max())
    from matplotlib.lines import Line2D

    handles.append(
        Line2D(
            [],
            [],
            marker="o",
            mfc="none",
            mec="gold",
            mew=2.5,
            ls="none",
            ms=14,
            label="predicted class's output",
        )
    )
    fig.colorbar(
        mappable, ax=axes, orientation="horizontal", label="bond stiffness k [N/m]", shrink=0.5, aspect=50
    )
    fig.legend(handles=handles, loc="outside lower center", ncol=4, fontsize=8, frameon=False)
    fig.suptitle(f"trained lattice of seed {median['seed']} (median test accuracy {median['test']:.3f})")
    viz.save_figure(fig, ctx.path("lattice_predictions.png"))


if __name__ == "__main__":
    scenario_main(run, __doc__)
