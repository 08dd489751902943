"""Physical learning rules side by side: in situ backpropagation, coupled learning, equilibrium propagation.

On the paper's 14-node network (Li & Mao 2024), three ways to measure the
training direction from equilibrium states of the network itself:

* in situ backpropagation (Li & Mao): the free state and the adjoint state
  (loads -dL/du at the outputs); dL/dk_i = e_i(free) e_i(adjoint) exactly;
* coupled learning (Stern et al., PRX 11, 021045, 2021): free state and
  the state with the outputs clamped a fraction eta of the way to the target,
  dk_i = -(alpha / eta) [e_i(clamped)^2 - e_i(free)^2] / 2;
* equilibrium propagation (Scellier & Bengio 2017): free state and the state
  nudged by the force -beta dL/du, the same energy difference over beta.

1. Agreement with the exact gradient as the nudge shrinks, on 8 random
   networks (the 14-node lattice with random widths in [1.5, 2.5] mm, random
   loads and random target displacements of the two bottom nodes, squared
   error): cosine similarity and relative error of each rule's estimate
   against the exact in situ gradient for eta (beta) = 0.3 ... 1e-4, and the
   observed convergence rates. Equilibrium propagation tends to the exact
   gradient (cosine -> 1, error -> 0 at rate 1). Coupled learning tends to a
   different limit: the gradient of the output error weighted by the inverse
   output compliance S^-1 (see physim.lattice.rules); its cosine with the
   exact gradient levels off below 1 (reported), and with that limit it tends
   to 1 at rate 1.
2. The behaviour task of mnn_behaviour (5 g on node 10, target (-0.6253,
   -0.4800) mm at the bottom nodes): loss against the number of physical
   equilibrium states measured, for the three rules (Adam, lr 0.1, nudge 0.1).
3. Iris (the mnn_iris set-up, 5 seeds, 8 starts of 30 epochs per seed,
   --quick: 1 seed, 2 starts of 4 epochs): training accuracy of the kept
   start against physical solves, and test accuracy reached by each rule.

The Iris trainings are independent (``--workers N`` / ``--scheduler``; the
default is serial).
"""

import os

import numpy as np

from physim.distributed import run_sweep
from physim.lattice import (
    RuleObjective,
    adjoint,
    coupled_learning,
    coupled_learning_limit,
    equilibrium_propagation,
    load_iris,
    mse_loss,
    paper_network,
    solve,
    stiffness_from_width,
    stiffness_transform,
    train_adam,
    train_classifier,
    weight_force,
)
from physim.scenario import ScenarioContext, scenario_main

RULES = ["in_situ", "coupled_learning", "equilibrium_propagation"]
LABEL = {
    "in_situ": "in situ backpropagation",
    "coupled_learning": "coupled learning",
    "equilibrium_propagation": "equilibrium propagation",
}
STYLE = {"in_situ": "-", "coupled_learning": "-", "equilibrium_propagation": "--"}  # EP overlays in situ
OUT = np.array([[12, 1], [13, 1]])
NUDGES = [0.3, 0.1, 0.03, 0.01, 0.003, 0.001, 0.0001]


def cosine(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def convergence(n_draws: int, seed: int) -> dict:
    """Cosine and relative error of each rule against the exact gradient, per nudge, mean over draws."""
    net = paper_network()
    rng = np.random.default_rng(seed)
    t = stiffness_transform()
    rows = {
        key: []
        for key in ("cl_cos", "cl_err", "cl_lim_cos", "cl_lim_err", "ep_cos", "ep_err", "lim_vs_exact")
    }
    for _ in range(n_draws):
        k = rng.uniform(t.lower.item(), t.upper.item(), net.n_bonds)
        f = np.zeros((3, net.n_nodes, 2))
        f[:, [9, 10, 11], 1] = -weight_force(rng.uniform(1, 5, (3, 3)))
        target = rng.uniform(-0.8e-3, -0.3e-3, (3, 2))

        def loss(u, target=target):
            r = u[:, OUT[:, 0], OUT[:, 1]] - target
            g = np.zeros_like(u)
            np.add.at(g, (slice(None), OUT[:, 0], OUT[:, 1]), r)
            return 0.5 * float(np.sum(r * r)), g

        eq = solve(net, k, f)
        exact = np.asarray(adjoint(eq, loss(eq.displacements)[1]).stiffness)
        lim = coupled_learning_limit(net, k, f, OUT, target)
        gmax = np.abs(loss(eq.displacements)[1]).max()
        rows["lim_vs_exact"].append(cosine(lim, exact))
        cl, ep = [], []
        for nu in NUDGES:
            gc = coupled_learning(net, k, f, OUT, target, eta=nu).gradient
            ge = equilibrium_propagation(net, k, f, loss, beta=nu * np.abs(f).max() / gmax).gradient
            cl.append((cosine(gc, exact), np.linalg.norm(gc - exact) / np.linalg.norm(exact),
                       cosine(gc, lim), np.linalg.norm(gc - lim) / np.linalg.norm(lim)))  # fmt: skip
            ep.append((cosine(ge, exact), np.linalg.norm(ge - exact) / np.linalg.norm(exact)))
        cl, ep = np.array(cl), np.array(ep)
        rows["cl_cos"].append(cl[:, 0])
        rows["cl_err"].append(cl[:, 1])
        rows["cl_lim_cos"].append(cl[:, 2])
        rows["cl_lim_err"].append(cl[:, 3])
        rows["ep_cos"].append(ep[:, 0])
        rows["ep_err"].append(ep[:, 1])
    out = {key: np.mean(v, axis=0) for key, v in rows.items()}
    out["n_draws"] = n_draws
    # observed rates from the three smallest nudges
    lx = np.log(NUDGES[-3:])
    out["ep_rate"] = float(np.polyfit(lx, np.log(out["ep_err"][-3:]), 1)[0])
    out["cl_lim_rate"] = float(np.polyfit(lx, np.log(out["cl_lim_err"][-3:]), 1)[0])
    return out


def behaviour(rule: str, epochs: int) -> dict:
    """Train the behaviour task with one rule; loss per epoch and physical states measured."""
    net = paper_network()
    f = np.zeros((1, net.n_nodes, 2))
    f[0, 10, 1] = -weight_force(5.0)
    target_mm = np.array([-0.6253, -0.4800])
    t = stiffness_transform()

    def loss(u, idx):
        return mse_loss(u, OUT, target_mm, scale=1e3)

    obj = RuleObjective(net, f, loss, t, rule=rule, nudge=0.1, outputs=OUT, targets=(target_mm * 1e-3)[None])
    k0 = np.full(net.n_bonds, stiffness_from_width(2e-3))
    res = train_adam(obj, t.inverse(k0), epochs=epochs, lr=0.1)
    u = solve(net, res.stiffness, f[0]).displacements[[12, 13], 1] * 1e3
    return {
        "loss": np.array([h["fun"] for h in res.history]),
        "solves_per_epoch": obj.n_solves / max(obj.n_calls, 1),
        "trained_mm": u,
    }


def iris_task(task: dict) -> dict:
    """One Iris training with one rule (picklable function of one task)."""
    X, y = load_iris()
    perm = np.random.default_rng(task["seed"]).permutation(150)
    tr, te = perm[:105], perm[105:]
    res = train_classifier(
        paper_network(), X[tr], y[tr], [13, 11, 12, 9], [[7, 0], [1, 0], [2, 0]],
        feature_max=X.max(axis=0), seed=task["seed"], rule=task["rule"], nudge=0.1,
        epochs=task["epochs"], restarts=task["restarts"],
    )  # fmt: skip
    return {
        **task,
        "train": res.accuracy(X[tr], y[tr]),
        "test": res.accuracy(X[te], y[te]),
        "train_curve": np.asarray(res.history["train_accuracy"]),
        "n_solves": res.n_solves,
    }


def run(ctx: ScenarioContext) -> dict:
    n_draws = 2 if ctx.quick else 8
    conv = convergence(n_draws, ctx.seed)
    for i, nu in enumerate(NUDGES):
        ctx.log(
            f"nudge {nu:g}: coupled learning cosine {conv['cl_cos'][i]:.4f} (with its limit "
            f"{conv['cl_lim_cos'][i]:.6f}), equilibrium propagation cosine {conv['ep_cos'][i]:.6f}, "
            f"relative error {conv['ep_err'][i]:.2e}"
        )
    ctx.log(
        f"observed rates: equilibrium propagation {conv['ep_rate']:.2f}, coupled learning to its limit "
        f"{conv['cl_lim_rate']:.2f}; cosine of the coupled-learning limit with the exact gradient "
        f"{np.mean(conv['lim_vs_exact']):.4f}"
    )
    epochs = 40 if ctx.quick else 300
    beh = {r: behaviour(r, epochs) for r in RULES}
    for r in RULES:
        ctx.log(
            f"behaviour, {LABEL[r]}: loss {beh[r]['loss'][-1]:.3g} mm^2, bottom nodes {beh[r]['trained_mm'].round(4)} mm"
        )

    seeds = [ctx.seed] if ctx.quick else [ctx.seed + s for s in range(5)]
    ep_i, rs_i = (4, 2) if ctx.quick else (30, 8)
    tasks = [{"rule": r, "seed": s, "epochs": ep_i, "restarts": rs_i} for r in RULES for s in seeds]
    sched = ctx.scheduler
    if sched is None and ctx.workers is None and not os.environ.get("PHYSIM_SCHEDULER"):
        sched = "serial"
    sweep = run_sweep(iris_task, tasks, scheduler=sched, workers=ctx.workers)
    if sweep.failed:
        raise RuntimeError(f"{len(sweep.failed)} trainings failed: {next(iter(sweep.failed.values()))}")
    iris = {r: [q for q in sweep.results if q["rule"] == r] for r in RULES}
    test_by_rule = {r: float(np.mean([q["test"] for q in iris[r]])) for r in RULES}
    train_by_rule = {r: float(np.mean([q["train"] for q in iris[r]])) for r in RULES}
    for r in RULES:
        ctx.log(
            f"Iris, {LABEL[r]}: train {train_by_rule[r]:.3f}, test {test_by_rule[r]:.3f} ({len(seeds)} seeds)"
        )

    if ctx.plots:
        _pictures(ctx, conv, beh, iris, seeds, rs_i)
    return {
        "nudges": NUDGES,
        "coupled_learning_cosine": conv["cl_cos"],
        "coupled_learning_relative_error": conv["cl_err"],
        "coupled_learning_cosine_to_its_limit": conv["cl_lim_cos"],
        "coupled_learning_relative_error_to_its_limit": conv["cl_lim_err"],
        "coupled_learning_limit_cosine_with_exact_gradient": float(np.mean(conv["lim_vs_exact"])),
        "coupled_learning_observed_rate_to_its_limit": conv["cl_lim_rate"],
        "equilibrium_propagation_cosine": conv["ep_cos"],
        "equilibrium_propagation_relative_error": conv["ep_err"],
        "equilibrium_propagation_observed_rate": conv["ep_rate"],
        "n_random_networks": n_draws,
        "behaviour_final_loss_mm2_by_rule": {r: float(beh[r]["loss"][-1]) for r in RULES},
        "behaviour_trained_mm_by_rule": {r: beh[r]["trained_mm"] for r in RULES},
        "behaviour_target_mm": [-0.6253, -0.4800],
        "iris_test_accuracy_by_rule": test_by_rule,
        "iris_train_accuracy_by_rule": train_by_rule,
        "iris_seeds": len(seeds),
        "iris_starts_per_seed": rs_i,
        "iris_epochs_per_start": ep_i,
        "physical_solves_per_sample_step": 2,
    }


def _pictures(ctx, conv, beh, iris, seeds, starts):
    from physim import viz

    fig, (a1, a2) = viz.figure(1, 2, figsize=(11, 4.2), layout="constrained")
    nu = np.array(NUDGES)
    a1.semilogx(nu, conv["ep_cos"], "o-", label="equilibrium propagation vs exact gradient")
    a1.semilogx(nu, conv["cl_cos"], "s-", label="coupled learning vs exact gradient")
    a1.semilogx(nu, conv["cl_lim_cos"], "s--", label="coupled learning vs its S^-1-weighted limit")
    a1.axhline(1.0, color="0.4", lw=0.8)
    a1.set(xlabel="nudge eta (coupled learning) or beta |dL/du| / |f| (equilibrium propagation)",
           ylabel="cosine similarity", title=f"direction, mean of {conv['n_draws']} random networks")  # fmt: skip
    a2.loglog(nu, conv["ep_err"], "o-", label=f"equilibrium propagation (rate {conv['ep_rate']:.2f})")
    a2.loglog(nu, conv["cl_err"], "s-", label="coupled learning vs exact gradient")
    a2.loglog(
        nu, conv["cl_lim_err"], "s--", label=f"coupled learning vs its limit (rate {conv['cl_lim_rate']:.2f})"
    )
    a2.set(xlabel="nudge", ylabel="relative error |g_rule - g| / |g|", title="size and direction")
    for a in (a1, a2):
        a.invert_xaxis()
        a.grid(alpha=0.3, which="both")
        a.legend(fontsize=7)
    viz.save_figure(
        fig,
        ctx.path("convergence.png"),
        data={
            "nudge": nu,
            **{k: conv[k] for k in ("ep_cos", "ep_err", "cl_cos", "cl_err", "cl_lim_cos", "cl_lim_err")},
        },
    )

    fig, (a1, a2) = viz.figure(1, 2, figsize=(11, 4.2), layout="constrained")
    data = {}
    for r in RULES:
        n = np.arange(1, len(beh[r]["loss"]) + 1) * beh[r]["solves_per_epoch"]
        a1.semilogy(n, beh[r]["loss"], ls=STYLE[r], label=LABEL[r])
        data[f"{r} physical solves"], data[f"{r} loss mm2"] = n, beh[r]["loss"]
    a1.set(
        xlabel="physical equilibrium states measured",
        ylabel="squared error [mm^2]",
        title="behaviour task (one load case)",
    )
    for j, r in enumerate(RULES):
        for i, q in enumerate(iris[r]):
            per_epoch = q["n_solves"] / (starts * len(q["train_curve"]))
            n = np.arange(1, len(q["train_curve"]) + 1) * per_epoch
            a2.plot(
                n,
                q["train_curve"],
                color=f"C{j}",
                ls=STYLE[r],
                alpha=0.7,
                label=f"{LABEL[r]} ({len(seeds)} seeds)" if i == 0 else None,
            )
            data[f"iris {r} seed {q['seed']} physical solves"] = n
            data[f"iris {r} seed {q['seed']} train accuracy"] = q["train_curve"]
    a2.set(
        xlabel="physical equilibrium states measured (kept start)",
        ylabel="training accuracy (fraction)",
        title="Iris, kept start of each seed",
    )
    for a in (a1, a2):
        a.grid(alpha=0.3)
        a.legend(fontsize=8)
    viz.save_figure(fig, ctx.path("training_by_rule.png"), data=data)


if __name__ == "__main__":
    scenario_main(run, __doc__)
