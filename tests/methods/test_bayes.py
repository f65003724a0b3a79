"""GPs, Bayes by Backprop, MC dropout, ensembles, temperature scaling and uncertainty metrics."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dltricks.methods.bayes import (
    BayesLinear,
    GPNumericalError,
    TemperatureScaled,
    bayes_kl,
    bayes_mlp,
    classification_uncertainty,
    elbo_loss,
    enable_dropout,
    ensemble_probs,
    fit_gp,
    fit_temperature,
    gaussian_nll,
    interval_coverage,
    mc_probs,
    nll,
    ood_auroc,
    reliability_diagram,
)
from dltricks.train.metrics import expected_calibration_error


def test_bbb_kl_equals_closed_form_of_torch_distributions():
    torch.manual_seed(0)
    layer = BayesLinear(5, 3, prior_sigma=0.5, init_sigma=0.2)
    with torch.no_grad():
        layer.weight_rho.add_(torch.randn_like(layer.weight_rho) * 0.3)
    d = torch.distributions
    ref = sum(d.kl_divergence(d.Normal(mu, F.softplus(rho)), d.Normal(0.0, 0.5)).sum()
              for mu, rho in ((layer.weight_mu, layer.weight_rho),
                              (layer.bias_mu, layer.bias_rho)))
    torch.testing.assert_close(layer.kl(), ref)
    net = nn.Sequential(layer, nn.ReLU(), BayesLinear(3, 2))
    torch.testing.assert_close(bayes_kl(net), layer.kl() + net[2].kl())
    with pytest.raises(ValueError, match="no BayesLinear"):
        bayes_kl(nn.Linear(2, 2))


def test_bbb_layer_samples_around_its_mean_and_elbo_adds_kl_per_sample():
    torch.manual_seed(0)
    layer = BayesLinear(4, 2, init_sigma=0.5)
    x = torch.randn(3, 4)
    mean = F.linear(x, layer.weight_mu, layer.bias_mu)
    torch.testing.assert_close(layer(x, sample=False), mean)
    draws = torch.stack([layer(x) for _ in range(2000)])
    assert not torch.equal(draws[0], draws[1])
    torch.testing.assert_close(draws.mean(0), mean, atol=0.06, rtol=0)
    net = bayes_mlp(4, 2, hidden=(8,))
    logits, y = net(x), torch.tensor([0, 1, 1])
    torch.testing.assert_close(elbo_loss(logits, y, net, 10),
                               F.cross_entropy(logits, y) + bayes_kl(net) / 10)


def test_temperature_scaling_lowers_nll_of_an_overconfident_toy():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(4000, 5, generator=g)
    y = torch.multinomial(z.softmax(-1), 1, generator=g).squeeze(1)  # calibrated at T = 1
    logits = 3.0 * z  # over-confident by a factor 3
    t = fit_temperature(logits, y)
    assert abs(t - 3.0) < 0.3
    before = F.cross_entropy(logits, y).item()
    after = F.cross_entropy(logits / t, y).item()
    assert after < before - 0.1
    scaled = TemperatureScaled(nn.Identity(), t)
    torch.testing.assert_close(scaled(logits), logits / t)
    assert torch.equal(scaled(logits).argmax(-1), logits.argmax(-1))


def test_gp_posterior_mean_interpolates_noise_free_training_points():
    x = torch.linspace(-2, 2, 12)
    y = torch.sin(2 * x)
    fit = fit_gp(x[:, None], y, steps=60, lr=0.1, noise=1e-5)
    with warnings.catch_warnings():  # predicting at the training inputs is the point here
        warnings.filterwarnings("ignore", "The input matches the stored training data")
        mean, var = fit.predict(x[:, None], include_noise=False)
    torch.testing.assert_close(mean, y, atol=2e-2, rtol=0)
    assert var.max() < 1e-2
    # far from the data the latent variance grows back towards the prior
    _, far = fit.predict(torch.tensor([[10.0]]), include_noise=False)
    assert far.item() > 10 * var.max().item()


def test_deep_kernel_gp_trains_the_feature_extractor():
    torch.manual_seed(0)
    x = torch.linspace(-2, 2, 30)[:, None]
    y = torch.sin(3 * x[:, 0])
    fe = nn.Sequential(nn.Linear(1, 8), nn.Tanh(), nn.Linear(8, 2))
    w0 = fe[0].weight.detach().clone()
    fit = fit_gp(x, y, steps=30, lr=0.05, feature_extractor=fe)
    assert not torch.equal(fe[0].weight, w0)
    assert fit.losses[-1] < fit.losses[0]


def test_not_psd_kernel_gives_a_clear_message():
    import gpytorch

    class NegativeKernel(gpytorch.kernels.RBFKernel):
        """-RBF: negative definite, no jitter can fix it."""

        def forward(self, x1, x2, **kw):
            return -super().forward(x1, x2, **kw)

    x = torch.linspace(0, 1, 10)[:, None]
    warnings.filterwarnings("ignore", "A not p.d., added jitter")  # pytest restores filters
    with pytest.raises(GPNumericalError, match=r"not positive definite even with a Cholesky "
                                              r"jitter of 0\.01.*standardise x and y"):
        fit_gp(x, torch.zeros(10), steps=2, kernel=NegativeKernel(), noise=1e-4)
    with pytest.raises(ValueError, match=r"y \(N,\)"):
        fit_gp(x, torch.zeros(10, 1))


def test_mc_dropout_keeps_norm_layers_in_eval_and_needs_dropout():
    net = nn.Sequential(nn.Linear(4, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.5),
                        nn.Linear(16, 3))
    enable_dropout(net)
    assert not net[1].training and net[3].training
    torch.manual_seed(0)
    x = torch.randn(8, 4)
    p = mc_probs(net, x, samples=50)
    torch.testing.assert_close(p.sum(-1), torch.ones(8))
    net.eval()
    assert not torch.allclose(p, net(x).softmax(-1))  # averaging stochastic passes
    with pytest.raises(ValueError, match="dropout"):
        mc_probs(nn.Linear(4, 3), x)


def test_mc_probs_and_ensembles_restore_each_modules_own_mode():
    # a BatchNorm frozen in eval inside a training model must stay frozen afterwards
    net = nn.Sequential(nn.Linear(4, 16), nn.BatchNorm1d(16), nn.Dropout(0.5), nn.Linear(16, 3))
    net.train()
    net[1].eval()
    x = torch.randn(8, 4)
    for call in (lambda: mc_probs(net, x, samples=3), lambda: mc_probs(net, x, mc_dropout=False),
                 lambda: ensemble_probs([net], x)):
        call()
        assert [m.training for m in net] == [True, False, True, True]
    # without dropout, the passes are deterministic eval passes: dropout off, BN statistics used
    net[1].train()
    with torch.no_grad():
        expected = net.eval()(x).softmax(-1)
    net.train()
    torch.testing.assert_close(mc_probs(net, x, samples=3, mc_dropout=False), expected)
    assert all(m.training for m in net)


def test_ensemble_of_identical_members_is_the_member():
    torch.manual_seed(0)
    m = nn.Linear(4, 3)
    x = torch.randn(5, 4)
    torch.testing.assert_close(ensemble_probs([m, m, m], x), m(x).softmax(-1))
    m2 = nn.Linear(4, 3)
    torch.testing.assert_close(ensemble_probs([m, m2], x),
                               (m(x).softmax(-1) + m2(x).softmax(-1)) / 2)


def test_ood_auroc_extremes_and_ties():
    assert ood_auroc(torch.tensor([0.1, 0.2]), torch.tensor([0.8, 0.9])) == 1.0
    assert ood_auroc(torch.tensor([0.8, 0.9]), torch.tensor([0.1, 0.2])) == 0.0
    assert ood_auroc(torch.tensor([0.5, 0.5]), torch.tensor([0.5, 0.5])) == 0.5
    with pytest.raises(ValueError, match="at least one"):
        ood_auroc(torch.tensor([]), torch.tensor([1.0]))


def test_interval_coverage_and_gaussian_nll():
    g = torch.Generator().manual_seed(0)
    y = torch.randn(200_000, generator=g)
    mean, std = torch.zeros_like(y), torch.ones_like(y)
    assert abs(interval_coverage(mean, std, y, 0.95) - 0.95) < 0.005
    assert abs(interval_coverage(mean, std, y, 0.5) - 0.5) < 0.005
    assert interval_coverage(mean, 0.5 * std, y, 0.95) < 0.7  # too narrow under-covers
    z3 = torch.zeros(3)
    assert abs(gaussian_nll(z3, torch.ones(3), z3) - 0.5 * math.log(2 * math.pi)) < 1e-6
    assert gaussian_nll(z3, torch.ones(3), z3 + 1) > gaussian_nll(z3, torch.ones(3), z3)
    with pytest.raises(ValueError, match="level"):
        interval_coverage(mean, std, y, 1.5)


def test_classification_metrics_reuse_the_train_metrics():
    g = torch.Generator().manual_seed(0)
    probs = torch.randn(300, 4, generator=g).mul(2).softmax(-1)
    y = torch.randint(4, (300,), generator=g)
    out = classification_uncertainty(probs, y, probs[:50])
    assert out["ece"] == expected_calibration_error(probs, y, 15)
    assert abs(out["nll"] - F.nll_loss(probs.log(), y).item()) < 1e-6
    assert out["nll"] == nll(probs, y)
    conf = probs.max(-1).values.mean().item()
    assert abs(out["overconfidence"] - (conf - out["accuracy"])) < 1e-6
    diagram = reliability_diagram(probs, y, 10)
    assert len(diagram["confidence"]) == 10 and sum(diagram["count"]) == 300
