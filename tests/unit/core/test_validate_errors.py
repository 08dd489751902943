import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from physim import errors
from physim._validate import as_float_array, as_index_array, as_scalar, check_spd


def test_error_hierarchy_subclasses_builtins():
    assert issubclass(errors.InvalidInputError, ValueError)
    assert issubclass(errors.ShapeError, ValueError)
    assert issubclass(errors.InvalidTypeError, TypeError)
    assert issubclass(errors.SingularSystemError, np.linalg.LinAlgError)
    assert issubclass(errors.ConvergenceError, RuntimeError)
    for name in errors.__all__:
        assert issubclass(getattr(errors, name), errors.PhysimError)


def test_float_array_messages():
    with pytest.raises(errors.ShapeError, match=r"points must have shape \(\*, 3\), got \(4, 2\)"):
        as_float_array("points", np.zeros((4, 2)), shape=(None, 3))
    with pytest.raises(errors.NonFiniteError, match=r"first at index \(1, 2\)"):
        a = np.zeros((3, 3))
        a[1, 2] = np.nan
        as_float_array("x", a)
    with pytest.raises(errors.InvalidTypeError, match="complex"):
        as_float_array("x", np.ones(2, dtype=complex))
    out = as_float_array("x", [[1, 2], [3, 4]])
    assert out.dtype == np.float64 and out.flags.c_contiguous


def test_index_array_messages():
    with pytest.raises(errors.InvalidInputError, match=r"index 7 at position \(1, 0\).*\[0, 5\)"):
        as_index_array("bonds", [[0, 1], [7, 2]], upper=5)
    with pytest.raises(errors.InvalidTypeError, match="non-integer"):
        as_index_array("idx", [0.5])
    assert as_index_array("idx", [1.0, 2.0]).dtype == np.int64


def test_scalar_and_spd():
    with pytest.raises(errors.InvalidInputError, match="dt must be > 0"):
        as_scalar("dt", 0.0, positive=True)
    with pytest.raises(errors.NonFiniteError):
        as_scalar("dt", np.inf)
    D = np.stack([np.eye(3), np.diag([1.0, -1.0, 1.0])])
    with pytest.raises(errors.InvalidInputError, match=r"D\[1\] is not positive definite"):
        check_spd("D", D)
    N = np.eye(3)
    N[0, 1] = 1.0
    with pytest.raises(errors.InvalidInputError, match=r"^P0 is not symmetric"):
        check_spd("P0", N)
    check_spd("P0", np.eye(3))


@settings(max_examples=50, deadline=None)
@given(
    hnp.arrays(
        np.float64,
        hnp.array_shapes(max_dims=3, max_side=4),
        elements=st.floats(allow_nan=True, allow_infinity=True),
    )
)
def test_as_float_array_never_passes_nonfinite(a):
    if np.all(np.isfinite(a)):
        np.testing.assert_array_equal(as_float_array("a", a), a)
    else:
        with pytest.raises(errors.NonFiniteError, match="a contains"):
            as_float_array("a", a)
