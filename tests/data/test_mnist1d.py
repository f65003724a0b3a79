"""MNIST-1D: knobs change the data, and generation leaves global RNG states alone."""

from __future__ import annotations

import random

import numpy as np
import torch

from dltricks.data import create_dataset

N = 300


def test_global_numpy_and_python_rng_states_are_unchanged():
    np.random.seed(123)
    random.seed(456)
    expected_np, expected_py = np.random.rand(3), random.random()
    np.random.seed(123)
    random.seed(456)
    create_dataset("mnist1d", seed=7, num_samples=N, shear_scale=0.5)  # not cached: fresh call
    assert np.array_equal(np.random.rand(3), expected_np)
    assert random.random() == expected_py


def test_knobs_change_the_data_and_are_recorded():
    base = create_dataset("mnist1d", num_samples=N)
    noisy = create_dataset("mnist1d", num_samples=N, iid_noise_scale=0.3)
    fixed = create_dataset("mnist1d", num_samples=N, max_translation=1)
    assert noisy.info["generator"]["iid_noise_scale"] == 0.3
    assert fixed.info["generator"]["max_translation"] == 1
    assert not torch.equal(base.train.x, noisy.train.x)
    assert not torch.equal(base.train.x, fixed.train.x)

    # Without translation, same-class signals line up: the class-mean signal is sharper, so
    # the per-class variance around it is smaller than with the default translation.
    def within_class_var(s):
        x, y = s.train.x[:, 0], s.train.y
        return torch.stack([x[y == c].var(0).mean() for c in range(10)]).mean()

    assert within_class_var(fixed) < 0.8 * within_class_var(base)


def test_num_samples_and_balance():
    s = create_dataset("mnist1d", num_samples=305)
    assert sum(s.sizes().values()) == 300  # rounded down to equal classes
    counts = torch.bincount(torch.cat([s.train.y, s.val.y, s.test.y]), minlength=10)
    assert counts.tolist() == [30] * 10
    assert torch.bincount(s.train.y, minlength=10).tolist() == [18] * 10


def test_returned_tensors_do_not_share_memory_between_calls():
    a = create_dataset("mnist1d", num_samples=N)
    a.train.x.zero_()
    b = create_dataset("mnist1d", num_samples=N)
    assert b.train.x.abs().sum() > 0
