"""Mechanical neural network, regression: learn prescribed linear force-displacement slopes.

After Li & Mao (2024): a vertical force F in [-0.196, 0.196] N (a 20 g weight
either way) on the middle node of the third row of the 14-node lattice; the
network is trained (Adam, minibatches, Bounded stiffness from bar width in
[1.5, 2.5] mm) so that the vertical displacements of the two bottom nodes
follow the lines u = s F with target slopes (9.0, 12.0) mm/N (F and u positive
upwards), from noisy
samples. Reports the loss curve, the fitted slopes of the trained network
(least squares over the force range, linear model) and how linear the
trained network stays under the geometrically nonlinear model (slopes and
R^2 over the same range).
"""

import numpy as np

from physim.lattice import (
    LatticeObjective,
    mse_loss,
    paper_network,
    solve,
    stiffness_from_width,
    stiffness_transform,
    train_adam,
)
from physim.lattice.plotting import plot_network, write_network
from physim.scenario import ScenarioContext, scenario_main

LOAD_NODE = 10
OUTPUTS = [[12, 1], [13, 1]]
TARGET_SLOPES = np.array([9.0, 12.0])  # mm/N (F > 0 upward)
F_MAX = 0.196  # N


def fit_slopes(forces, u_mm):
    """Least-squares slope through the origin and R^2 of u (N, 2) against F (N,)."""
    s = forces @ u_mm / (forces @ forces)
    resid = u_mm - forces[:, None] * s
    r2 = 1 - (resid**2).sum(0) / ((u_mm - u_mm.mean(0)) ** 2).sum(0)
    return s, r2


def run(ctx: ScenarioContext) -> dict:
    rng = np.random.default_rng(ctx.seed)
    net = paper_network()
    n_train = 40
    F = rng.uniform(-F_MAX, F_MAX, n_train)
    y = F[:, None] * TARGET_SLOPES[None, :] + 0.01 * rng.standard_normal((n_train, 2))  # mm
    loads = np.zeros((n_train, net.n_nodes, 2))
    loads[:, LOAD_NODE, 1] = F

    def loss(u, idx):
        return mse_loss(u, OUTPUTS, y[idx], scale=1e3)

    transform = stiffness_transform()
    k0 = np.full(net.n_bonds, stiffness_from_width(2e-3))
    obj = LatticeObjective(net, loads, loss, transform)
    epochs = 60 if ctx.quick else 300
    res = train_adam(obj, transform.inverse(k0), epochs=epochs, batch_size=8, lr=0.05, seed=ctx.seed)
    k = res.stiffness

    grid = np.linspace(-F_MAX, F_MAX, 21)
    gl = np.zeros((grid.size, net.n_nodes, 2))
    gl[:, LOAD_NODE, 1] = grid
    u0 = solve(net, k0, gl).displacements[:, [12, 13], 1] * 1e3
    u_lin = solve(net, k, gl).displacements[:, [12, 13], 1] * 1e3
    u_nl = solve(net, k, gl, nonlinear=True).displacements[:, [12, 13], 1] * 1e3
    s0, _ = fit_slopes(grid, u0)
    s_lin, r2_lin = fit_slopes(grid, u_lin)
    s_nl, r2_nl = fit_slopes(grid, u_nl)
    losses = [h["fun"] for h in res.history]
    ctx.log(
        f"slopes untrained {s0.round(3)}, trained {s_lin.round(3)} mm/N (target {TARGET_SLOPES}); "
        f"nonlinear model {s_nl.round(3)} mm/N, R^2 {r2_nl.round(5)}"
    )

    eq = solve(net, k, gl[-1])
    write_network(ctx.path("lattice_trained.vtu"), net, k, eq.displacements, tension=eq.tensions)
    if ctx.plots:
        from physim import viz

        clim = (transform.lower.item(), transform.upper.item())
        plot_network(
            ctx.path("lattice_trained.png"),
            net,
            k,
            eq.displacements,
            clim=clim,
            title=f"trained, F = {F_MAX} N",
            loads=[LOAD_NODE],
            outputs=[12, 13],
        )
        viz.plot_curves(
            {"minibatch MSE [mm^2]": losses},
            ctx.path("loss.png"),
            xlabel="epoch",
            ylabel="loss [mm^2]",
            logy=True,
            title="regression training (Adam, batch 8)",
        )
        fig, ax = viz.figure(figsize=(6, 4))
        for j, (name, c) in enumerate([("node 12", "C0"), ("node 13", "C1")]):
            ax.plot(F, y[:, j], "o", color=c, ms=3, alpha=0.6, label=f"{name} data")
            ax.plot(grid, u_lin[:, j], "-", color=c, label=f"{name} trained (linear)")
            ax.plot(grid, u_nl[:, j], "--", color=c, label=f"{name} trained (nonlinear)")
            ax.plot(grid, u0[:, j], ":", color="gray")
        ax.set_xlabel("force F [N]")
        ax.set_ylabel("vertical displacement [mm]")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        ax.set_title(
            "bottom-node responses: data, trained (linear, nonlinear), untrained (dotted)", fontsize=9
        )
        viz.save_figure(
            fig,
            ctx.path("responses.png"),
            data={
                "data F N": F,
                "data node 12 mm": y[:, 0],
                "data node 13 mm": y[:, 1],
                "F N": grid,
                "trained linear node 12 mm": u_lin[:, 0],
                "trained linear node 13 mm": u_lin[:, 1],
                "trained nonlinear node 12 mm": u_nl[:, 0],
                "trained nonlinear node 13 mm": u_nl[:, 1],
                "untrained node 12 mm": u0[:, 0],
                "untrained node 13 mm": u0[:, 1],
            },  # fmt: skip
        )
    return {
        "target_slopes_mm_per_N": TARGET_SLOPES,
        "untrained_slopes_mm_per_N": s0,
        "fitted_slopes_mm_per_N": s_lin,
        "nonlinear_slopes_mm_per_N": s_nl,
        "nonlinear_r2": r2_nl,
        "linear_r2": r2_lin,
        "final_loss_mm2": float(losses[-1]),
        "initial_loss_mm2": float(losses[0]),
        "epochs": int(res.nit),
        "n_train": n_train,
    }


if __name__ == "__main__":
    scenario_main(run, __doc__)
