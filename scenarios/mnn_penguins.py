"""Mechanical neural network, classification: Palmer penguins on the paper's 14-node network (10 seeds).

The ``mnn_iris`` pipeline on a second data set: the Palmer penguins
(Gorman, Williams & Fraser 2014; 333 penguins with no missing value, species
Adelie / Chinstrap / Gentoo). Bill length, bill depth, flipper length and
body mass, each divided by its maximum over the data set, become downward
forces F = -(x / x_max) 0.049 N on nodes 13, 11, 12, 9 of ``paper_network()``;
the species is argmax |u_x| of nodes 7, 1, 2; ``train_classifier``'s recipe
(cross-entropy, minibatch Adam, batch 16, lr 1.0 cosine, 16 starts kept by
training accuracy); random 70/30 split per seed (233 / 100), 10 seeds
(--quick: 2 seeds, 3 starts of 5 epochs). Reports mean +/- std train and
test accuracy, the per-seed table, the test confusion matrix and the curves.

Unlike Iris, these features vary little relative to their maxima (flipper
length 172-231 mm: x / x_max in [0.74, 1]), so the forces differ little
between species; the proportional encoding of the paper keeps that.
Seeds fan out with ``--workers N`` / ``--scheduler`` (default serial).
"""

import os

import numpy as np

from physim.distributed import run_sweep
from physim.lattice import PENGUIN_SPECIES, load_penguins, paper_network, train_classifier
from physim.scenario import ScenarioContext, scenario_main

INPUTS = [13, 11, 12, 9]  # bill length, bill depth, flipper length, body mass
OUTPUTS = [[7, 0], [1, 0], [2, 0]]  # Adelie, Chinstrap, Gentoo


def split(seed: int, n: int):
    perm = np.random.default_rng(seed).permutation(n)
    n_train = int(round(0.7 * n))
    return perm[:n_train], perm[n_train:]


def train_seed(task: dict) -> dict:
    """Train and evaluate one seed (a picklable function of one task)."""
    X, y = load_penguins()
    tr, te = split(task["seed"], len(y))
    res = train_classifier(
        paper_network(),
        X[tr],
        y[tr],
        INPUTS,
        OUTPUTS,
        feature_max=X.max(axis=0),
        seed=task["seed"],
        **task["recipe"],
    )
    return {
        "seed": task["seed"],
        "train": res.accuracy(X[tr], y[tr]),
        "test": res.accuracy(X[te], y[te]),
        "loss": np.asarray(res.history["loss"]),
        "train_curve": np.asarray(res.history["train_accuracy"]),
        "test_curve": res.accuracy_history(X[te], y[te]),
        "confusion_test": res.confusion_matrix(X[te], y[te]),
    }


def run(ctx: ScenarioContext) -> dict:
    n_seeds = 2 if ctx.quick else 10
    recipe = {"epochs": 5, "restarts": 3} if ctx.quick else {}
    tasks = [{"seed": ctx.seed + s, "recipe": recipe} for s in range(n_seeds)]
    sched = ctx.scheduler
    if sched is None and ctx.workers is None and not os.environ.get("PHYSIM_SCHEDULER"):
        sched = "serial"
    sweep = run_sweep(train_seed, tasks, scheduler=sched, workers=ctx.workers)
    if sweep.failed:
        raise RuntimeError(f"{len(sweep.failed)} seeds failed: {next(iter(sweep.failed.values()))}")
    runs = sweep.results
    for r in runs:
        ctx.log(f"seed {r['seed']}: train {r['train']:.3f}, test {r['test']:.3f}")
    tr = np.array([r["train"] for r in runs])
    te = np.array([r["test"] for r in runs])
    conf = np.sum([r["confusion_test"] for r in runs], axis=0)
    ctx.log(
        f"train {tr.mean():.3f} +/- {tr.std():.3f}, test {te.mean():.3f} +/- {te.std():.3f} over {n_seeds} seeds"
    )
    if ctx.plots:
        from physim import viz

        fig, (a1, a2) = viz.figure(1, 2, figsize=(11, 4.2), layout="constrained")
        data = {}
        for i, r in enumerate(runs):
            ep = np.arange(1, len(r["loss"]) + 1)
            a1.plot(ep, r["loss"], color="C0", alpha=0.4, label="each seed" if i == 0 else None)
            a2.plot(ep, r["train_curve"], color="C0", alpha=0.4, label="train, each seed" if i == 0 else None)
            a2.plot(ep, r["test_curve"], color="C1", alpha=0.4, label="test, each seed" if i == 0 else None)
            data[f"epoch seed {r['seed']}"] = ep
            data[f"loss seed {r['seed']}"] = r["loss"]
            data[f"train accuracy seed {r['seed']}"] = r["train_curve"]
            data[f"test accuracy seed {r['seed']}"] = r["test_curve"]
        a1.set(xlabel="epoch", ylabel="cross-entropy [nats]", title="training loss (kept start)")
        a2.set(
            xlabel="epoch",
            ylabel="accuracy (fraction of penguins)",
            title="accuracy after each epoch",
            ylim=(0, 1.02),
        )
        for a in (a1, a2):
            viz.integer_ticks(a)
            a.grid(alpha=0.3)
            a.legend(fontsize=8)
        viz.save_figure(fig, ctx.path("curves.png"), data=data)
        fig, ax = viz.figure(figsize=(5, 4.4), layout="constrained")
        im = ax.imshow(conf, cmap="Blues")
        for i in range(3):
            for j in range(3):
                color = "white" if conf[i, j] > conf.max() / 2 else "black"
                ax.text(j, i, str(conf[i, j]), ha="center", va="center", color=color)
        ax.set_xticks(range(3), PENGUIN_SPECIES)
        ax.set_yticks(range(3), PENGUIN_SPECIES)
        ax.set(xlabel="predicted species", ylabel="true species")
        ax.set_title(
            f"test penguins, {n_seeds} seeds (accuracy {np.trace(conf) / conf.sum():.3f})", fontsize=10
        )
        fig.colorbar(im, ax=ax, label="penguins")
        viz.save_figure(
            fig,
            ctx.path("confusion_matrix.png"),
            data={
                "true species": list(PENGUIN_SPECIES),
                **{f"predicted {c}": conf[:, j] for j, c in enumerate(PENGUIN_SPECIES)},
            },
        )
    return {
        "train_accuracy_mean": float(tr.mean()),
        "train_accuracy_std": float(tr.std()),
        "test_accuracy_mean": float(te.mean()),
        "test_accuracy_std": float(te.std()),
        "per_seed": [{"seed": r["seed"], "train": r["train"], "test": r["test"]} for r in runs],
        "confusion_matrix_test": conf,
        "classes": list(PENGUIN_SPECIES),
        "n_samples": int(sum(len(split(0, 333)[i]) for i in range(2))),
        "n_seeds": n_seeds,
        "network": "paper_network(): 14 nodes, 28 bonds, nodes 0 and 4 pinned",
        "input_nodes": INPUTS,
        "output_nodes": [o[0] for o in OUTPUTS],
    }


if __name__ == "__main__":
    scenario_main(run, __doc__)
