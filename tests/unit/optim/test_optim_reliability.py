"""minimize never loses work: exact resume wherever it is interrupted (Ctrl-C, kill -9),
exceptions of the objective, malformed checkpoints, stale temporary files, bounds,
scale-invariant stopping and the stop criterion on every result."""

import json
import os
import signal
import subprocess
import sys
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy.optimize as so

from physim import errors
from physim.optim import STOP_REASONS, MinimizeResult, check_gradient, minimize

HERE = Path(__file__).resolve().parent
WORKER = HERE / "resume_worker.py"
NIGHTLY = os.environ.get("PHYSIM_HYPOTHESIS_PROFILE") == "nightly"

A = np.array([[3.0, 0.5, 0.0], [0.5, 2.0, 0.3], [0.0, 0.3, 1.0]])
B = np.array([1.0, -2.0, 4.0])


def quad(x):
    r = x - B
    return 0.5 * r @ A @ r, A @ r


def rosen(x):
    f = 100.0 * (x[1] - x[0] ** 2) ** 2 + (1.0 - x[0]) ** 2
    g = np.array([-400.0 * x[0] * (x[1] - x[0] ** 2) - 2.0 * (1.0 - x[0]), 200.0 * (x[1] - x[0] ** 2)])
    return f, g


def _regression(n_samples=50, d=3, seed=3):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_samples, d))
    y = X @ np.arange(1.0, d + 1.0) + 0.1 * rng.standard_normal(n_samples)

    def loss(w, batch):
        r = X[batch] @ w - y[batch]
        return float(r @ r / len(batch)), 2 * X[batch].T @ r / len(batch)

    return loss


# ------------------------------------------------------------------------------- Ctrl-C


def test_minibatch_adam_resume_is_exact_after_ctrl_c_at_every_evaluation(tmp_path):
    loss = _regression()
    kw = dict(method="adam", n_samples=50, batch_size=16, epochs=5, lr=0.05, seed=7)  # 4 batches / epoch
    full = minimize(loss, np.zeros(3), **kw)
    total = 5 * 4
    mid_epoch = 0
    for stop_at in range(1, total + 1):
        ck = tmp_path / f"c{stop_at}.npz"
        calls = {"n": 0}

        def interrupted(w, batch, stop_at=stop_at, calls=calls):
            calls["n"] += 1
            if calls["n"] == stop_at:
                raise KeyboardInterrupt
            return loss(w, batch)

        part = minimize(interrupted, np.zeros(3), checkpoint=ck, **kw)
        assert part.stop_reason == "interrupted"
        with np.load(ck) as z:
            mid_epoch += json.loads(str(z["_state"]))["pos"] > 0
        res = minimize(loss, np.zeros(3), checkpoint=ck, resume=ck, **kw)
        np.testing.assert_array_equal(res.x, full.x)
        assert [h["fun"] for h in res.history] == [h["fun"] for h in full.history]
        assert res.nit == full.nit == 5
    assert mid_epoch == total - 5  # every interruption but those at an epoch's first batch


def test_adam_resume_is_exact_after_sigint_at_random_times(tmp_path):
    trials = 40 if NIGHTLY else 12
    out = subprocess.run(
        [sys.executable, str(WORKER), "sigint", "adam", str(tmp_path), str(trials), "11"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    stats = dict(kv.split("=") for kv in out.stdout.split())
    assert int(stats["mismatches"]) == 0, out.stdout
    assert int(stats["interrupted"]) >= trials // 2, out.stdout
    assert int(stats["mid_epoch"]) >= 1, out.stdout


# ------------------------------------------------------------------------------- kill -9


def _load_worker():
    import importlib.util

    spec = importlib.util.spec_from_file_location("resume_worker", WORKER)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("method", ["adam", "lbfgs"])
def test_resume_is_exact_after_kill_9_and_leaves_no_temporary_files(tmp_path, method, monkeypatch):
    worker = _load_worker()
    savez = np.savez

    def slow_savez(fh, *args, **arrays):  # as the worker's "slow" writes: time the same run
        savez(fh, *args, **arrays)
        time.sleep(0.03)

    with monkeypatch.context() as m:
        m.setattr(np, "savez", slow_savez)
        t0 = time.perf_counter()
        ref = worker.run(method, tmp_path / "ref.npz", False).x
        duration = time.perf_counter() - t0
    rng = np.random.default_rng(1 if method == "adam" else 2)
    kills = 12 if NIGHTLY else 3
    left_tmp = 0
    for k in range(kills):
        d = tmp_path / f"k{k}"
        d.mkdir()
        ck = d / "run.npz"
        p = subprocess.Popen(
            [sys.executable, str(WORKER), "run", method, str(ck), str(d / "x.npy"), "slow"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert p.stdout.readline().strip() == "start"
        time.sleep(float(rng.uniform(0.1, 0.9)) * duration)
        p.send_signal(signal.SIGKILL)
        p.wait()
        p.stdout.close()
        assert p.returncode == -signal.SIGKILL, "the run ended before the kill"
        left_tmp += len(list(d.glob("*.tmp")))
        res = worker.run(method, ck, ck.exists())
        np.testing.assert_array_equal(res.x, ref)
        assert list(d.glob("*.tmp")) == [], "stale temporary files survived the resume"
    print(f"{method}: {left_tmp} temporary file(s) left by {kills} kills, all removed on resume")


def test_stale_temporary_files_are_removed_only_for_dead_processes(tmp_path):
    from physim._atomic import _HOST, _stem

    ck = tmp_path / "run.npz"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        stale = tmp_path / f"{_stem(ck)}{_HOST}-{dead.pid}.abcd1234.tmp"
        busy = tmp_path / f"{_stem(ck)}{_HOST}-{live.pid}.abcd1234.tmp"
        other = tmp_path / "unrelated.tmp"
        for p in (stale, busy, other):
            p.write_bytes(b"x" * 1000)
        minimize(quad, np.zeros(3), method="adam", maxiter=3, checkpoint=ck)
        assert not stale.exists()
        assert busy.exists() and other.exists()
    finally:
        live.kill()
        live.wait()


# ------------------------------------------------------------------------------- exceptions


@pytest.mark.parametrize("method", ["lbfgs", "slsqp", "adam"])
def test_objective_exception_returns_best_iterate(method):
    calls = {"n": 0}
    boom = errors.ConvergenceError("solver diverged at an extreme parameter")

    def f(x):
        calls["n"] += 1
        if calls["n"] == 7:
            raise boom
        return rosen(x)

    res = minimize(f, [-1.2, 1.0], method=method, maxiter=50)
    assert not res.success
    assert res.stop_reason == "exception"
    assert res.exception is boom
    assert "ConvergenceError" in res.message and "solver diverged" in res.message
    assert np.isfinite(res.fun) and res.fun == pytest.approx(rosen(res.x)[0])
    assert res.fun == res.best_fun <= rosen(np.array([-1.2, 1.0]))[0]


def test_minibatch_objective_exception_keeps_checkpoint(tmp_path):
    loss = _regression()
    kw = dict(method="adam", n_samples=50, batch_size=16, epochs=4, lr=0.05, seed=7)
    full = minimize(loss, np.zeros(3), **kw)
    calls = {"n": 0}

    def f(w, batch):
        calls["n"] += 1
        if calls["n"] == 10:
            raise RuntimeError("out of licences")
        return loss(w, batch)

    ck = tmp_path / "c.npz"
    res = minimize(f, np.zeros(3), checkpoint=ck, **kw)
    assert res.stop_reason == "exception" and isinstance(res.exception, RuntimeError)
    np.testing.assert_array_equal(minimize(loss, np.zeros(3), resume=ck, **kw).x, full.x)


def test_exception_at_first_evaluation_propagates():
    def f(x):
        raise ValueError("typo in the objective")

    for method in ("lbfgs", "adam"):
        with pytest.raises(ValueError, match="typo"):
            minimize(f, [0.0, 0.0], method=method)


def test_callback_and_constraint_exceptions_stop_the_run():
    def cb(r):
        if r.nit == 3:
            raise KeyError("bad bookkeeping")

    res = minimize(rosen, [-1.2, 1.0], method="lbfgs", callback=cb)
    assert res.stop_reason == "exception" and isinstance(res.exception, KeyError)
    assert "callback" in res.message
    calls = {"n": 0}

    def c(x):
        calls["n"] += 1
        if calls["n"] == 4:
            raise ZeroDivisionError("constraint blew up")
        return x[0] + x[1] - 1.0

    con = {"type": "eq", "fun": c, "jac": lambda x: np.array([1.0, 1.0])}
    res = minimize(lambda x: (x @ x, 2 * x), [3.0, -1.0], method="slsqp", constraints=con)
    assert res.stop_reason == "exception" and "constraints[0]" in res.message


# ------------------------------------------------------------------------------- malformed checkpoints


def _valid_checkpoint(path, method="adam"):
    minimize(quad, np.zeros(3), method=method, maxiter=4, checkpoint=path)
    return path.read_bytes()


def _bad_files(tmp_path):
    good = _valid_checkpoint(tmp_path / "good.npz")
    files = {
        "empty": b"",
        "truncated": good[: len(good) // 2],
        "garbage": b"\x00\x01 not an archive at all" * 10,
        "text": "résumé ü".encode("latin-1"),
    }
    out = {k: tmp_path / f"{k}.npz" for k in files}
    for k, v in files.items():
        out[k].write_bytes(v)
    np.savez(tmp_path / "foreign.npz", weights=np.ones(3))
    out["foreign"] = tmp_path / "foreign.npz"
    np.save(tmp_path / "single.npy", np.ones(3))
    out["npy"] = tmp_path / "single.npy"
    np.savez(tmp_path / "badjson.npz", _state=np.array("{not json"))
    out["badjson"] = tmp_path / "badjson.npz"
    np.savez(tmp_path / "list.npz", _state=np.array("[1, 2]"))
    out["list"] = tmp_path / "list.npz"
    with np.load(tmp_path / "good.npz") as z:
        st = json.loads(str(z["_state"]))
        arr = {k: z[k] for k in z.files if k != "_state"}
    for name, change in {
        "nokey": lambda s, a: s.pop("step"),
        "badtype": lambda s, a: s.update(done="three"),
        "noarray": lambda s, a: a.pop("m"),
        "badshape": lambda s, a: a.update(v=np.ones(5)),
        "nanarray": lambda s, a: a.update(x=np.full(3, np.nan)),
        "version": lambda s, a: s.update(version=99),
        "history": lambda s, a: s.update(history=[{"nit": 1}]),
    }.items():
        s2, a2 = json.loads(json.dumps(st)), dict(arr)
        change(s2, a2)
        np.savez(tmp_path / f"{name}.npz", _state=np.array(json.dumps(s2)), **a2)
        out[name] = tmp_path / f"{name}.npz"
    zpath = tmp_path / "damaged.npz"
    zpath.write_bytes(good)
    with warnings.catch_warnings(), zipfile.ZipFile(zpath, "a") as zf:
        warnings.simplefilter("ignore")  # a second, corrupt copy of an array member
        zf.writestr("m.npy", b"\x93NUMPY garbage")
    out["damaged"] = zpath
    return out


def test_malformed_checkpoints_raise_one_error_naming_the_file(tmp_path):
    for kind, path in _bad_files(tmp_path).items():
        with pytest.raises(errors.CheckpointError) as info:
            minimize(quad, np.zeros(3), method="adam", maxiter=4, resume=path)
        assert str(path) in str(info.value), kind
    (tmp_path / "dir.npz").mkdir()
    with pytest.raises(errors.CheckpointError, match="directory"):
        minimize(quad, np.zeros(3), method="adam", resume=tmp_path / "dir.npz")


def test_checkpoint_of_another_problem_size_says_so(tmp_path):
    ck = tmp_path / "c.npz"
    minimize(quad, np.zeros(3), method="lbfgs", maxiter=3, checkpoint=ck)
    with pytest.raises(errors.CheckpointError, match=r"n=3 parameters.*n=2"):
        minimize(rosen, [0.0, 0.0], method="lbfgs", resume=ck)
    with pytest.raises(errors.CheckpointError, match="method='lbfgs'"):
        minimize(quad, np.zeros(3), method="adam", resume=ck)
    loss = _regression()
    kw = dict(method="adam", n_samples=50, batch_size=16, epochs=3, seed=7)
    calls = {"n": 0}

    def f(w, b):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return loss(w, b)

    minimize(f, np.zeros(3), checkpoint=ck, **kw)
    with pytest.raises(errors.CheckpointError, match="batches per epoch"):
        minimize(loss, np.zeros(3), resume=ck, **{**kw, "batch_size": 40})


# ------------------------------------------------------------------------------- arguments


@pytest.mark.parametrize("method", ["lbfgs", "slsqp", "adam"])
def test_nan_bounds_are_rejected(method):
    with pytest.raises(errors.NonFiniteError, match=r"bounds\[1\] lower is NaN"):
        minimize(quad, np.zeros(3), method=method, bounds=[(0, 1), (np.nan, 1), (0, 1)])
    with pytest.raises(errors.NonFiniteError, match=r"bounds.ub\[2\]"):
        minimize(quad, np.zeros(3), method=method, bounds=so.Bounds(0.0, [1.0, 1.0, np.nan]))
    with pytest.raises(errors.ShapeError, match="bounds"):
        minimize(quad, np.zeros(3), method=method, bounds=so.Bounds(np.zeros(2), np.ones(2)))
    with pytest.raises(errors.InvalidTypeError, match="bounds"):
        minimize(quad, np.zeros(3), method=method, bounds=[(0, 1), ("a", 1), (0, 1)])
    with pytest.raises(errors.InvalidInputError, match="admits no finite value"):
        minimize(quad, np.zeros(3), method=method, bounds=[(0, 1), (np.inf, np.inf), (0, 1)])


@pytest.mark.parametrize(
    "kw, name",
    [
        ({"maxiter": np.nan}, "maxiter"),
        ({"maxiter": None}, "maxiter"),
        ({"maxiter": "10"}, "maxiter"),
        ({"maxiter": 2**70}, "maxiter"),
        ({"maxiter": 2.5}, "maxiter"),
        ({"method": "adam", "betas": (0.9,)}, "betas"),
        ({"method": "adam", "betas": 0.9}, "betas"),
        ({"method": "adam", "lr": np.nan}, "lr"),
        ({"method": "adam", "eps": 0.0}, "eps"),
        ({"method": "adam", "n_samples": np.nan, "batch_size": 4}, "n_samples"),
        ({"method": "adam", "n_samples": 10, "batch_size": 0}, "batch_size"),
        ({"method": "adam", "seed": -1}, "seed"),
        ({"checkpoint_every": 0}, "checkpoint_every"),
        ({"tol": np.nan}, "tol"),
        ({"tol": -1.0}, "tol"),
        ({"method": 3}, "method"),
        ({"progress": "yes"}, "progress"),
        ({"args": [1]}, "args"),
    ],
)
def test_bad_arguments_raise_physim_errors_naming_them(kw, name):
    with pytest.raises(errors.PhysimError) as info:
        minimize(quad, np.zeros(3), **kw)
    assert name in str(info.value)


def test_adam_refuses_n_samples_beyond_memory():
    with pytest.raises(errors.ResourceLimitError, match="n_samples"):
        minimize(lambda x, b: quad(x), np.zeros(3), method="adam", n_samples=2**60, batch_size=4)


def test_check_gradient_rejects_zero_and_nonfinite_directions():
    def wrong(x):
        return float(x @ x), 3 * x  # the true gradient is 2x

    x = np.array([0.3, -0.2])
    assert not check_gradient(wrong, x).ok
    with pytest.raises(errors.InvalidInputError, match="direction is zero"):
        check_gradient(wrong, x, direction=np.zeros(2))
    with pytest.raises(errors.NonFiniteError, match="direction"):
        check_gradient(wrong, x, direction=[np.inf, 0.0])
    with pytest.raises(errors.PhysimError, match="n_steps"):
        check_gradient(wrong, x, n_steps=1)
    with pytest.raises(errors.PhysimError, match="h0"):
        check_gradient(wrong, x, h0=np.nan)


# ------------------------------------------------------------------------------- files


def test_checkpoints_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        ck = tmp_path / "c.npz"
        minimize(quad, np.zeros(3), method="adam", maxiter=2, checkpoint=ck)
        assert ck.stat().st_mode & 0o777 == 0o644
        os.umask(0o027)
        ck2 = tmp_path / "d.npz"
        minimize(quad, np.zeros(3), method="lbfgs", maxiter=2, checkpoint=ck2)
        assert ck2.stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(old)


# ------------------------------------------------------------------------------- stopping


def test_default_stopping_is_scale_invariant():
    ref = minimize(rosen, [-1.2, 1.0], method="lbfgs", maxiter=500)
    assert ref.success and ref.stop_reason in ("gtol", "ftol")
    np.testing.assert_allclose(ref.x, [1.0, 1.0], atol=1e-4)
    for c in (1e-12, 1e-6, 1e6, 1e12):

        def scaled(x, c=c):
            f, g = rosen(x)
            return c * f, c * g

        res = minimize(scaled, [-1.2, 1.0], method="lbfgs", maxiter=500)
        np.testing.assert_allclose(res.x, ref.x, rtol=1e-6, atol=1e-8)
        assert res.stop_reason == ref.stop_reason and abs(res.nit - ref.nit) <= 2, (c, res.message)


def test_si_lattice_fit_runs_to_its_target():
    from physim.lattice import adjoint as lattice_adjoint
    from physim.lattice import mse_loss, paper_network, solve

    net = paper_network()
    rng = np.random.default_rng(0)
    k_true = rng.uniform(110.0, 170.0, net.n_bonds)  # N/m
    forces = np.zeros((net.n_nodes, 2))
    forces[10, 1] = -0.05  # N
    outputs = np.array([[12, 1], [13, 1], [11, 0]])
    target = solve(net, k_true, forces).displacements[outputs[:, 0], outputs[:, 1]]  # m, ~1e-3

    def fun(k):
        eq = solve(net, k, forces)
        v, g = mse_loss(eq.displacements, outputs, target)  # m^2: ~1e-7, gradients ~1e-9
        return v, lattice_adjoint(eq, g).stiffness

    k0 = np.full(net.n_bonds, 140.0)
    f0, g0 = fun(k0)
    assert f0 < 1e-6 and np.max(np.abs(g0)) < 1e-8  # an SI-scaled problem
    res = minimize(fun, k0, method="lbfgs", bounds=[(100.0, 200.0)] * net.n_bonds, maxiter=500)
    u = solve(net, res.x, forces).displacements[outputs[:, 0], outputs[:, 1]]
    assert np.max(np.abs(u - target) / np.abs(target)) < 1e-3, res.message
    assert res.fun < 1e-6 * f0
    assert res.stop_reason in ("gtol", "ftol") and "initial" in res.message


def test_every_result_says_which_criterion_stopped_it():
    cases = {
        "maxiter": minimize(rosen, [-1.2, 1.0], method="lbfgs", maxiter=3),
        "gtol": minimize(quad, np.zeros(3), method="lbfgs", tol=1e-8),
        "callback": minimize(rosen, [-1.2, 1.0], method="adam", callback=_stop_at(2)),
    }
    for want, res in cases.items():
        assert res.stop_reason == want, (want, res.message)
    for method in ("lbfgs", "slsqp", "adam"):
        res = minimize(quad, np.zeros(3), method=method, maxiter=200)
        assert res.stop_reason in STOP_REASONS and res.message


def _stop_at(k):
    def cb(r):
        if r.nit == k:
            raise StopIteration

    return cb


def test_result_repr_is_short():
    res = minimize(rosen, [-1.2, 1.0], method="adam", maxiter=3000)
    assert isinstance(res, MinimizeResult) and isinstance(res, so.OptimizeResult)
    assert len(res.history) == 3000
    text = repr(res)
    assert len(text) < 700 and "history=list[3000]" in text and "stop_reason='maxiter'" in text
    assert str(res) == text
