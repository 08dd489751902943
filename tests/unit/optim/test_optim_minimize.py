import numpy as np
import pytest

from physim.errors import InvalidInputError, ShapeError
from physim.optim import minimize


def rosen(x):
    f = 100.0 * (x[1] - x[0] ** 2) ** 2 + (1.0 - x[0]) ** 2
    g = np.array([-400.0 * x[0] * (x[1] - x[0] ** 2) - 2.0 * (1.0 - x[0]), 200.0 * (x[1] - x[0] ** 2)])
    return f, g


A = np.array([[3.0, 0.5, 0.0], [0.5, 2.0, 0.3], [0.0, 0.3, 1.0]])
B = np.array([1.0, -2.0, 4.0])


def quad(x):
    r = x - B
    return 0.5 * r @ A @ r, A @ r


@pytest.mark.parametrize("method", ["lbfgs", "slsqp"])
def test_rosenbrock_scipy_methods(method):
    res = minimize(rosen, [-1.2, 1.0], method=method, maxiter=500, tol=1e-12)
    assert res.success, res.message
    np.testing.assert_allclose(res.x, [1.0, 1.0], atol=2e-4)
    assert res.nit == len(res.history) > 0
    assert res.nfev >= res.nit
    fs = [h["fun"] for h in res.history]
    assert fs[-1] < fs[0]


def test_rosenbrock_adam():
    res = minimize(rosen, [-1.2, 1.0], method="adam", maxiter=4000, lr=0.02)
    np.testing.assert_allclose(res.x, [1.0, 1.0], atol=1e-3)
    assert res.nit == 4000 and len(res.history) == 4000


@pytest.mark.parametrize("method", ["lbfgs", "slsqp", "adam"])
def test_bounded_quadratic(method):
    # unconstrained minimum is B = (1, -2, 4); box [0, 2] x [-1, 1] x [0, 3]
    bounds = [(0.0, 2.0), (-1.0, 1.0), (0.0, 3.0)]
    kw = {"lr": 0.05, "maxiter": 3000} if method == "adam" else {"maxiter": 200}
    res = minimize(quad, np.zeros(3), method=method, bounds=bounds, **kw)
    lo, hi = np.array(bounds).T
    assert np.all(res.x >= lo - 1e-12) and np.all(res.x <= hi + 1e-12)
    # reference by dense projected gradient iteration (independent of the optimisers)
    x = np.zeros(3)
    for _ in range(20000):
        x = np.clip(x - 0.2 * quad(x)[1], lo, hi)
    np.testing.assert_allclose(res.x, x, atol=1e-4)


def test_slsqp_equality_constraint():
    # minimise |x|^2 subject to x0 + x1 = 1 -> (0.5, 0.5)
    con = {"type": "eq", "fun": lambda x: x[0] + x[1] - 1.0, "jac": lambda x: np.array([1.0, 1.0])}
    res = minimize(lambda x: (x @ x, 2 * x), [3.0, -1.0], method="slsqp", constraints=con)
    assert res.success
    np.testing.assert_allclose(res.x, [0.5, 0.5], atol=1e-6)


def test_constraints_rejected_for_other_methods():
    con = {"type": "eq", "fun": lambda x: x[0], "jac": lambda x: np.array([1.0])}
    with pytest.raises(InvalidInputError, match="slsqp"):
        minimize(lambda x: (x @ x, 2 * x), [1.0], method="lbfgs", constraints=con)


def test_adam_minibatch_deterministic_and_covers_every_sample():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((50, 3))
    w_true = np.array([1.0, -2.0, 0.5])
    y = X @ w_true
    seen = []

    def loss(w, batch):
        seen.append(np.array(batch))
        r = X[batch] @ w - y[batch]
        return float(r @ r / len(batch)), 2 * X[batch].T @ r / len(batch)

    kw = dict(method="adam", n_samples=50, batch_size=16, epochs=60, lr=0.05, seed=7)
    r1 = minimize(loss, np.zeros(3), **kw)
    first_epoch = np.concatenate(seen[:4])
    assert sorted(first_epoch.tolist()) == list(range(50))
    assert [len(b) for b in seen[:4]] == [16, 16, 16, 2]
    assert not np.array_equal(seen[0], seen[4])  # reshuffled next epoch
    r2 = minimize(loss, np.zeros(3), **kw)
    np.testing.assert_array_equal(r1.x, r2.x)
    r3 = minimize(loss, np.zeros(3), **{**kw, "seed": 8})
    assert not np.array_equal(r1.x, r3.x)
    np.testing.assert_allclose(r1.x, w_true, atol=1e-2)
    assert r1.nit == 60 and len(r1.history) == 60


@pytest.mark.parametrize("method", ["lbfgs", "slsqp", "adam"])
def test_nonfinite_value_returns_best_iterate(method):
    calls = {"n": 0}

    def f(x):
        calls["n"] += 1
        if calls["n"] == 6:
            return np.nan, np.zeros_like(x)
        return quad(x)

    res = minimize(f, np.zeros(3), method=method, maxiter=50)
    assert not res.success
    assert "non-finite objective value" in res.message and "evaluation 6" in res.message
    assert np.isfinite(res.fun)
    assert res.fun == pytest.approx(quad(res.x)[0])
    assert res.fun == res.best_fun


def test_nonfinite_gradient_message_names_index():
    def f(x):
        g = A @ (x - B)
        if x[0] != 0.0:
            g[2] = np.inf
        return quad(x)[0], g

    res = minimize(f, np.zeros(3), method="lbfgs")
    assert not res.success
    assert "gradient" in res.message and "index 2" in res.message
    np.testing.assert_array_equal(res.x, np.zeros(3))


@pytest.mark.parametrize("method", ["lbfgs", "adam"])
def test_keyboard_interrupt_returns_best(method):
    calls = {"n": 0}

    def f(x):
        calls["n"] += 1
        if calls["n"] == 10:
            raise KeyboardInterrupt
        return rosen(x)

    res = minimize(f, [-1.2, 1.0], method=method, maxiter=100)
    assert res.message == "interrupted" and not res.success
    assert res.fun == pytest.approx(rosen(res.x)[0])
    assert res.fun <= rosen(np.array([-1.2, 1.0]))[0]


def test_callback_stop_iteration():
    seen = []

    def cb(r):
        seen.append(r.nit)
        if r.nit == 3:
            raise StopIteration

    res = minimize(rosen, [-1.2, 1.0], method="lbfgs", callback=cb)
    assert seen == [1, 2, 3]
    assert res.message == "stopped by callback"


@pytest.mark.parametrize("method", ["lbfgs", "slsqp", "adam"])
def test_checkpoint_resume_equals_uninterrupted(tmp_path, method):
    kw = {"lr": 0.01} if method == "adam" else {}
    full = minimize(rosen, [-1.2, 1.0], method=method, maxiter=30, **kw)
    ck = tmp_path / "run.npz"
    calls = {"n": 0}

    def interrupted(x):
        calls["n"] += 1
        if calls["n"] == 15:
            raise KeyboardInterrupt
        return rosen(x)

    part = minimize(interrupted, [-1.2, 1.0], method=method, maxiter=30, checkpoint=ck, **kw)
    assert part.message == "interrupted" and ck.exists()
    live = {"n": 0}

    def counting(x):
        live["n"] += 1
        return rosen(x)

    resumed = minimize(counting, [-1.2, 1.0], method=method, maxiter=30, resume=ck, checkpoint=ck, **kw)
    np.testing.assert_array_equal(resumed.x, full.x)
    assert resumed.nit == full.nit
    assert [h["fun"] for h in resumed.history] == [h["fun"] for h in full.history]
    assert live["n"] < full.nfev  # evaluations before the interruption were not redone


def test_resume_rejects_other_problem(tmp_path):
    ck = tmp_path / "c.npz"
    minimize(rosen, [-1.2, 1.0], method="lbfgs", maxiter=3, checkpoint=ck)
    with pytest.raises(InvalidInputError, match="method"):
        minimize(rosen, [-1.2, 1.0], method="adam", resume=ck)
    with pytest.raises(InvalidInputError, match="x0"):
        minimize(rosen, [0.0, 1.0], method="lbfgs", resume=ck)
    with pytest.raises(FileNotFoundError):
        minimize(rosen, [0.0, 1.0], resume=tmp_path / "missing.npz")


def test_checkpoint_is_written_atomically(tmp_path, monkeypatch):
    ck = tmp_path / "c.npz"
    minimize(rosen, [-1.2, 1.0], method="adam", maxiter=5, checkpoint=ck)
    before = ck.read_bytes()
    import sys

    mm = sys.modules["physim.optim.minimize"]

    def broken_savez(fh, **kw):
        fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(mm.np, "savez", broken_savez)
    with pytest.raises(OSError):
        minimize(rosen, [-1.2, 1.0], method="adam", maxiter=5, checkpoint=ck)
    assert ck.read_bytes() == before
    assert list(tmp_path.iterdir()) == [ck]


def test_bad_inputs():
    with pytest.raises(InvalidInputError, match="method"):
        minimize(rosen, [0.0, 0.0], method="newton")
    with pytest.raises(ShapeError, match="gradient"):
        minimize(lambda x: (1.0, np.zeros(5)), [0.0, 0.0])
    with pytest.raises(InvalidInputError, match="pair"):
        minimize(lambda x: 1.0, [0.0, 0.0])
    with pytest.raises(InvalidInputError, match="lower"):
        minimize(rosen, [0.0, 0.0], bounds=[(1, 0), (0, 1)])
    with pytest.raises(InvalidInputError, match="n_samples"):
        minimize(rosen, [0.0, 0.0], method="adam", batch_size=4)
    with pytest.raises(ValueError, match="x0"):
        minimize(rosen, [np.nan, 0.0])


def test_progress_bar_runs(capsys):
    res = minimize(rosen, [-1.2, 1.0], method="lbfgs", progress=True, maxiter=5)
    assert res.nit == 5
    assert "lbfgs" in capsys.readouterr().err


@pytest.mark.parametrize("method", ["lbfgs", "adam"])
def test_result_value_matches_returned_iterate(method):
    stop = {"n": 0}

    def cb(r):
        stop["n"] += 1
        if stop["n"] == 4:
            raise StopIteration

    for callback in (None, cb):
        res = minimize(rosen, [-1.2, 1.0], method=method, maxiter=20, callback=callback)
        f, g = rosen(res.x)
        assert res.fun == pytest.approx(f, rel=1e-12)
        np.testing.assert_allclose(res.jac, g, rtol=1e-10)


def _reference_adam(fun, x0, lr, factor, n_samples, batch_size, epochs, seed):
    """Plain minibatch Adam with a step-size factor, written out (slow reference)."""
    x, m, v, t = np.array(x0, dtype=float), 0.0, 0.0, 0
    n_batches = -(-n_samples // batch_size)
    for e in range(epochs):
        perm = np.random.default_rng([seed, e]).permutation(n_samples)
        for s in range(0, n_samples, batch_size):
            _, g = fun(x, perm[s : s + batch_size])
            m = 0.9 * m + 0.1 * g
            v = 0.999 * v + 0.001 * g * g
            step = lr * factor(t, epochs * n_batches)
            t += 1
            x = x - step * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
    return x


@pytest.mark.parametrize("schedule", ["cosine", lambda t, total: 0.5**t])
def test_adam_lr_schedule_matches_reference(schedule):
    pts = np.random.default_rng(3).standard_normal((10, 3))

    def fun(x, idx):
        r = x[None, :] - pts[idx]
        return 0.5 * float(np.mean(np.sum(r * r, axis=1))), np.mean(r, axis=0)

    res = minimize(
        fun, np.zeros(3), method="adam", epochs=5, n_samples=10, batch_size=4, lr=0.3, lr_schedule=schedule
    )
    factor = (lambda t, total: 0.5 * (1 + np.cos(np.pi * t / total))) if schedule == "cosine" else schedule
    np.testing.assert_allclose(res.x, _reference_adam(fun, np.zeros(3), 0.3, factor, 10, 4, 5, 0), rtol=1e-13)


def test_adam_lr_schedule_resumes_exactly(tmp_path):
    full = minimize(rosen, [-1.2, 1.0], method="adam", maxiter=30, lr=0.05, lr_schedule="cosine")
    ck = tmp_path / "run.npz"
    calls = {"n": 0}

    def interrupted(x):
        calls["n"] += 1
        if calls["n"] == 15:
            raise KeyboardInterrupt
        return rosen(x)

    minimize(
        interrupted, [-1.2, 1.0], method="adam", maxiter=30, lr=0.05, lr_schedule="cosine", checkpoint=ck
    )
    resumed = minimize(
        rosen, [-1.2, 1.0], method="adam", maxiter=30, lr=0.05, lr_schedule="cosine", resume=ck
    )
    np.testing.assert_array_equal(resumed.x, full.x)


def test_lr_schedule_validation():
    with pytest.raises(InvalidInputError, match="lr_schedule"):
        minimize(rosen, [0.0, 0.0], method="adam", lr_schedule="linear")
    with pytest.raises(InvalidInputError, match="applies to method=.adam. only"):
        minimize(rosen, [0.0, 0.0], method="lbfgs", lr_schedule="cosine")
    with pytest.raises(InvalidInputError, match="step size"):
        minimize(rosen, [0.0, 0.0], method="adam", lr_schedule=lambda t, total: -1.0)
