import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from physim.errors import InvalidInputError
from physim.optim import Bounded, Identity, Positive, Stack, check_gradient, transformed


def cubic(x):
    return float(np.sum(x**3) + np.sum(x) ** 2), 3 * x**2 + 2 * np.sum(x)


@pytest.mark.parametrize(
    "t",
    [
        Bounded(103.125, 171.875),
        Bounded(-1.0, 2.0, beta=3.0),
        Positive(),
        Identity(),
        Stack([(Bounded(0.1, 2.0), 2), (Positive(), 3)]),
    ],
)
def test_transform_vjp_taylor(t, rng):
    z = rng.standard_normal(5)
    chk = check_gradient(transformed(cubic, t), z)
    assert chk.ok, chk


def test_bounded_keeps_range_and_inverts(rng):
    t = Bounded(np.array([0.0, 1.0]), np.array([1.0, 3.0]), beta=2.0)
    z = rng.standard_normal((100, 2)) * 50
    x = t.forward(z)
    assert np.all(x >= [0.0, 1.0]) and np.all(x <= [1.0, 3.0])
    x = np.array([0.25, 2.5])
    np.testing.assert_allclose(t.forward(t.inverse(x)), x, rtol=1e-14)


def test_bounded_reference_formula():
    lo, hi, beta = 103.125, 171.875, 1.5
    z = np.linspace(-4, 4, 9)
    ref = lo + (hi - lo) / (1 + np.exp(-beta * z))
    np.testing.assert_allclose(Bounded(lo, hi, beta).forward(z), ref, rtol=1e-15)
    # extreme inputs neither overflow nor produce NaN
    assert np.all(np.isfinite(Bounded(lo, hi).forward(np.array([-1e4, 1e4]))))


def test_positive_reference_and_inverse():
    z = np.array([-30.0, -1.0, 0.0, 2.0, 40.0])
    np.testing.assert_allclose(Positive().forward(z), np.log1p(np.exp(z)), rtol=1e-12)
    x = np.array([1e-8, 0.3, 5.0, 700.0])
    np.testing.assert_allclose(Positive().forward(Positive().inverse(x)), x, rtol=1e-10)


def test_transform_errors():
    with pytest.raises(InvalidInputError, match="lower < upper"):
        Bounded(2.0, 1.0)
    with pytest.raises(InvalidInputError, match="strictly inside"):
        Bounded(0.0, 1.0).inverse(np.array([0.5, 1.0]))
    with pytest.raises(InvalidInputError, match="> 0"):
        Positive().inverse(np.array([1.0, -1.0]))
    with pytest.raises(ValueError, match="shape"):
        Stack([(Identity(), 2)]).forward(np.zeros(3))


@settings(max_examples=40, deadline=None)
@given(
    lo=st.floats(-1e3, 1e3),
    width=st.floats(1e-3, 1e3),
    z=st.lists(st.floats(-30, 30), min_size=1, max_size=6),
)
def test_bounded_property_inside_bounds(lo, width, z):
    t = Bounded(lo, lo + width)
    x = t.forward(np.array(z))
    assert np.all(x >= lo) and np.all(x <= lo + width) and np.all(np.isfinite(x))


def test_check_gradient_accepts_correct_gradient(rng):
    x = rng.standard_normal(6)
    chk = check_gradient(cubic, x)
    assert chk.ok
    assert abs(chk.rate - 2.0) < 0.1
    assert chk.rel_error < 1e-7


@pytest.mark.parametrize("wrong", ["scaled", "one_entry", "sign"])
def test_check_gradient_detects_wrong_gradient(rng, wrong):
    x = rng.standard_normal(6)

    def bad(x):
        f, g = cubic(x)
        g = g.copy()
        if wrong == "scaled":
            g *= 1.001
        elif wrong == "one_entry":
            g[3] += 0.01
        else:
            g = -g
        return f, g

    chk = check_gradient(bad, x, direction=np.ones(6))
    assert not chk.ok
    assert chk.rate < 1.5


def test_check_gradient_linear_function_is_ok():
    c = np.array([1.0, -2.0, 3.0])
    chk = check_gradient(lambda x: (float(c @ x), c), np.ones(3))
    assert chk.ok
    wrong = check_gradient(lambda x: (float(c @ x), c * 1.01), np.ones(3))
    assert not wrong.ok
