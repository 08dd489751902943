"""Door validation of physim.lattice: no hang past a limit point, no silent garbage at
extreme scales, typed errors for every bad argument."""

import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from physim import errors
from physim import lattice as L


def test_nonlinear_solve_past_a_limit_point_raises_instead_of_looping_forever():
    # a shallow two-bar (von Mises) truss loaded beyond its snap-through load (about 0.0385 N here):
    # the load step used to shrink until the target equalled the current load, and loop forever
    code = textwrap.dedent(
        """
        import numpy as np
        from physim import errors
        from physim.lattice import SpringNetwork, solve
        net = SpringNetwork([[-1.0, 0.0], [0.0, 0.1], [1.0, 0.0]], [[0, 1], [1, 2]], [0, 2])
        f = np.zeros((3, 2))
        f[1, 1] = -0.05
        try:
            solve(net, 100.0, f, nonlinear=True, max_bisections=60)
        except errors.ConvergenceError as exc:
            print("ConvergenceError:", exc)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("ConvergenceError:"), out.stdout
    assert "load fraction" in out.stdout and "residual norm" in out.stdout
    frac = float(re.search(r"load fraction reached: ([0-9.]+)", out.stdout).group(1))
    assert 0.7 < frac < 0.8  # the limit load over the applied load, 0.0385 / 0.05


def test_below_the_limit_point_the_same_truss_converges():
    net = L.SpringNetwork([[-1.0, 0.0], [0.0, 0.1], [1.0, 0.0]], [[0, 1], [1, 2]], [0, 2])
    f = np.zeros((3, 2))
    f[1, 1] = -0.03
    eq = L.solve(net, 100.0, f, nonlinear=True, max_bisections=60)
    assert eq.residual_norm[0] < 1e-10 and -0.1 < eq.displacements[1, 1] < 0


@pytest.mark.parametrize("scale", [1e200, 1e300, 1e-120])
def test_extreme_coordinates_are_rejected_not_blamed_on_floppy_modes(scale):
    net = L.paper_network()
    with pytest.raises(errors.InvalidInputError, match="rescale the coordinates"):
        L.SpringNetwork(net.points * scale, net.bonds, [0, 4])


def test_overflowing_equilibrium_is_an_error_not_inf():
    net = L.paper_network()
    f = np.zeros((net.n_nodes, 2))
    f[10, 1] = -1e300
    with pytest.raises(errors.NonFiniteError, match="not representable"):
        L.solve(net, 1e-10, f)


@pytest.mark.parametrize("rtol", [np.nan, -1.0, 0.0, 2.0, "1e-10"])
def test_floppy_modes_rtol_is_validated(rtol):
    net = L.square_lattice(3, 3, diagonals=False, fixed=[0, 1])
    assert L.floppy_modes(net).count == 3
    with pytest.raises(errors.PhysimError, match="rtol"):
        L.floppy_modes(net, rtol=rtol)


@pytest.mark.parametrize("eps", [0.0, -1.0, np.nan])
def test_classifier_loss_eps_is_validated(eps):
    with pytest.raises(errors.PhysimError, match="eps"):
        L.classifier_loss(np.zeros((14, 2)), [[12, 1], [13, 1]], [0], eps=eps)


def test_accuracy_rejects_labels_outside_the_classes():
    net = L.paper_network()
    F = np.zeros((2, 14, 2))
    F[:, 10, 1] = -0.1
    for labels in ([-1, 0], [0, 2]):
        with pytest.raises(errors.InvalidInputError, match="labels"):
            L.accuracy(net, 140.0, F, labels, [[12, 1], [13, 1]])


@pytest.mark.parametrize(
    "kw, name",
    [
        ({"max_iter": np.nan}, "max_iter"),
        ({"load_steps": 0}, "load_steps"),
        ({"max_bisections": 2**70}, "max_bisections"),
        ({"max_bisections": -1}, "max_bisections"),
        ({"nonlinear": "yes"}, "nonlinear"),
        ({"rtol": np.inf}, "rtol"),
    ],
)
def test_solve_arguments_are_validated(kw, name):
    net = L.paper_network()
    with pytest.raises(errors.PhysimError, match=name):
        L.solve(net, 140.0, np.zeros((14, 2)), **kw)


def test_builders_refuse_sizes_beyond_memory_and_bad_counts():
    with pytest.raises(errors.ResourceLimitError, match="square_lattice"):
        L.square_lattice(10**6, 10**6)
    with pytest.raises(errors.PhysimError, match="nx"):
        L.square_lattice(np.nan, 3)
    with pytest.raises(errors.PhysimError, match=r"rows\[1\]"):
        L.triangular_lattice((3, 2.5))
    with pytest.raises(errors.PhysimError, match="spacing"):
        L.square_lattice(3, 3, spacing=np.inf)
