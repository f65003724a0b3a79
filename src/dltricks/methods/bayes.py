"""Gaussian processes and Bayesian deep learning: GPs, DKL, MC dropout, ensembles, BBB, scaling.

* **Exact GP regression** with GPyTorch (Gardner et al. 2018; Rasmussen & Williams 2006):
  constant mean, scaled RBF kernel, Gaussian likelihood, hyperparameters fitted by maximising
  the exact marginal likelihood. A kernel matrix that is not positive definite
  (``NotPSDError``) is retried with growing Cholesky jitter; if that fails too, a
  :class:`GPNumericalError` says what to change.
* **Deep kernel learning** (Wilson, Hu, Salakhutdinov & Xing 2016): the same GP on the outputs of
  a neural feature extractor, trained jointly through the marginal likelihood.
* **MC dropout** (Gal & Ghahramani 2016): dropout kept on at test time, predictions averaged
  over stochastic forward passes.
* **Deep ensembles** (Lakshminarayanan, Pritzel & Blundell 2017): independently initialised
  networks, predictions averaged.
* **Bayes by Backprop** (Blundell, Cornebise, Kavukcuoglu & Wierstra 2015): a linear layer with
  a factorised Gaussian posterior ``q(w) = N(μ, σ²)``, ``σ = softplus(ρ)``, sampled with the
  reparameterisation trick and trained on the ELBO ``NLL + KL(q || p) / N``. We use a single
  Gaussian prior ``N(0, prior_sigma²)`` (the paper also proposes a scale mixture) so that the KL
  term has the closed form ``Σ log(σp/σ) + (σ² + μ²) / (2σp²) − 1/2``.
* **Temperature scaling** (Guo, Pleiss, Sun & Weinberger 2017): the non-Bayesian baseline, one
  scalar T fitted on validation logits by minimising the NLL.

Metrics: NLL, expected calibration error and reliability-diagram bins (reused from
:mod:`dltricks.train.metrics`), out-of-distribution AUROC (scikit-learn's ``roc_auc_score`` of an
uncertainty score, in-distribution = 0, OOD = 1; Hendrycks & Gimpel 2017), and the coverage of
central predictive intervals for regression.

Axis letters: N samples, K classes, S Monte-Carlo samples / ensemble members, F features.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dltricks.train.metrics import expected_calibration_error, reliability_bins
from dltricks.utils.mode import eval_mode

# --------------------------------------------------------------------------- Gaussian processes


class GPNumericalError(RuntimeError):
    """The GP's kernel matrix stayed non positive definite after adding jitter."""


def _gp_model_class():
    import gpytorch

    class ExactGPRegressor(gpytorch.models.ExactGP):
        """Exact GP: constant mean, a kernel (default scaled RBF), optional feature extractor."""

        def __init__(self, x: Tensor, y: Tensor, likelihood, kernel=None,
                     feature_extractor: nn.Module | None = None) -> None:
            super().__init__(x, y, likelihood)
            self.mean_module = gpytorch.means.ConstantMean()
            self.covar_module = kernel if kernel is not None else gpytorch.kernels.ScaleKernel(
                gpytorch.kernels.RBFKernel())
            self.feature_extractor = feature_extractor

        def forward(self, x: Tensor):
            z = self.feature_extractor(x) if self.feature_extractor is not None else x
            return gpytorch.distributions.MultivariateNormal(self.mean_module(z),
                                                             self.covar_module(z))

    return ExactGPRegressor


@dataclass
class GPFit:
    """A fitted GP: the model, its likelihood, the training losses and the jitter that worked."""

    model: nn.Module
    likelihood: nn.Module
    losses: list[float]
    jitter: float

    @torch.no_grad()
    def predict(self, x: Tensor, include_noise: bool = True) -> tuple[Tensor, Tensor]:
        """Predictive mean and variance (N,) at ``x`` (N, F); with the observation noise unless
        ``include_noise=False`` (the latent function's posterior)."""
        import gpytorch

        # Left in eval on purpose, not restored with utils.mode.eval_mode: ExactGP.train() drops
        # the cached posterior, and restoring the flag without calling train() would keep a
        # cache that goes stale once the hyperparameters are trained further.
        self.model.eval()
        self.likelihood.eval()
        with gpytorch.settings.cholesky_jitter(float_value=self.jitter,
                                               double_value=self.jitter):
            f = self.model(x)
            out = self.likelihood(f) if include_noise else f
            return out.mean, out.variance


def fit_gp(x: Tensor, y: Tensor, steps: int = 100, lr: float = 0.1,
           feature_extractor: nn.Module | None = None, kernel: nn.Module | None = None,
           noise: float | None = None, jitters: Sequence[float] = (1e-6, 1e-4, 1e-2)
           ) -> GPFit:
    """Fits an exact GP (or, with ``feature_extractor``, a deep kernel GP) by type-II ML.

    Args:
        x: (N, F) inputs (1-D inputs may be (N,)); y: (N,) targets. Standardise both for
            well-conditioned kernels.
        steps: Adam steps on the negative exact marginal log-likelihood (0: keep the initial
            hyperparameters).
        lr: Adam learning rate (the feature extractor's parameters included).
        feature_extractor: module mapping (N, F) to (N, F') for deep kernel learning.
        kernel: a GPyTorch kernel (default: ScaleKernel(RBFKernel)).
        noise: fix the likelihood's noise variance to this value (not trained); None learns it.
        jitters: Cholesky jitters tried in turn when the kernel matrix is not positive
            definite. Each retry fits afresh, except that a given ``kernel`` or
            ``feature_extractor`` keeps the weights the failed attempt left.

    Returns:
        A :class:`GPFit`.

    Raises:
        GPNumericalError: the kernel matrix is not positive definite even with the largest
            jitter.
    """
    import gpytorch
    from linear_operator.utils.errors import NotPSDError

    if y.ndim != 1 or x.shape[0] != y.shape[0]:
        raise ValueError(f"fit_gp needs x (N, F) or (N,) and y (N,), got {tuple(x.shape)} and "
                         f"{tuple(y.shape)}.")
    if steps < 0 or not jitters:
        raise ValueError("steps must be >= 0 and jitters non-empty.")
    cls = _gp_model_class()
    last: Exception | None = None
    for jitter in jitters:
        likelihood = gpytorch.likelihoods.GaussianLikelihood(
            noise_constraint=gpytorch.constraints.GreaterThan(1e-6))
        if noise is not None:
            likelihood.noise = noise
            likelihood.raw_noise.requires_grad_(False)
        model = cls(x, y, likelihood, kernel=kernel, feature_extractor=feature_extractor)
        model.train()
        likelihood.train()
        opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
        mll = gpytorch.mlls.ExactMarginalLogLikelihood(likelihood, model)
        losses: list[float] = []
        try:
            with gpytorch.settings.cholesky_jitter(float_value=jitter, double_value=jitter), \
                    gpytorch.settings.cholesky_max_tries(1):
                for _ in range(steps):
                    loss = -mll(model(x), y)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    losses.append(float(loss.detach()))
                fit = GPFit(model, likelihood, losses, jitter)
                fit.predict(x[:1])  # the posterior's Cholesky must succeed too
            return fit
        except NotPSDError as err:
            last = err
    raise GPNumericalError(
        f"The GP kernel matrix is not positive definite even with a Cholesky jitter of "
        f"{max(jitters):g} (tried {', '.join(f'{j:g}' for j in jitters)}): standardise x and y, "
        f"remove duplicated inputs, fix a larger noise, or check that the kernel is valid. "
        f"GPyTorch said: {last}"
    ) from last


# --------------------------------------------------------------------------- Bayes by Backprop


class BayesLinear(nn.Module):
    """Linear layer with a factorised Gaussian weight posterior (Blundell et al. 2015).

    Args:
        in_features, out_features: sizes.
        prior_sigma: standard deviation of the N(0, σp²) prior on weights and biases.
        init_sigma: initial posterior standard deviation.

    Shapes:
        (B, in_features) → (B, out_features); every forward draws fresh weights (in eval mode
        too, so repeated calls give Monte-Carlo samples); ``sample=False`` uses the means.
    """

    def __init__(self, in_features: int, out_features: int, prior_sigma: float = 1.0,
                 init_sigma: float = 0.01) -> None:
        super().__init__()
        if prior_sigma <= 0 or init_sigma <= 0:
            raise ValueError(f"prior_sigma and init_sigma must be positive, got {prior_sigma} "
                             f"and {init_sigma}.")
        self.in_features, self.out_features, self.prior_sigma = in_features, out_features, \
            prior_sigma
        rho = math.log(math.expm1(init_sigma))  # softplus^-1
        bound = 1 / math.sqrt(in_features)
        self.weight_mu = nn.Parameter(torch.empty(out_features, in_features).uniform_(-bound,
                                                                                     bound))
        self.weight_rho = nn.Parameter(torch.full((out_features, in_features), rho))
        self.bias_mu = nn.Parameter(torch.empty(out_features).uniform_(-bound, bound))
        self.bias_rho = nn.Parameter(torch.full((out_features,), rho))

    def forward(self, x: Tensor, sample: bool = True) -> Tensor:
        if not sample:
            return F.linear(x, self.weight_mu, self.bias_mu)
        w_sigma, b_sigma = F.softplus(self.weight_rho), F.softplus(self.bias_rho)
        w = self.weight_mu + w_sigma * torch.randn_like(w_sigma)
        b = self.bias_mu + b_sigma * torch.randn_like(b_sigma)
        return F.linear(x, w, b)

    def kl(self) -> Tensor:
        """Closed-form KL(q || p) summed over weights and biases."""
        total = torch.zeros(())
        for mu, rho in ((self.weight_mu, self.weight_rho), (self.bias_mu, self.bias_rho)):
            sigma = F.softplus(rho)
            total = total + (math.log(self.prior_sigma) - sigma.log()
                             + (sigma**2 + mu**2) / (2 * self.prior_sigma**2) - 0.5).sum()
        return total

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, prior_sigma={self.prior_sigma}"


def bayes_kl(model: nn.Module) -> Tensor:
    """Sum of the KL terms of every :class:`BayesLinear` in ``model``."""
    terms = [m.kl() for m in model.modules() if isinstance(m, BayesLinear)]
    if not terms:
        raise ValueError("The model has no BayesLinear layer.")
    return torch.stack(terms).sum()


def elbo_loss(logits: Tensor, y: Tensor, model: nn.Module, num_train: int,
              kl_weight: float = 1.0) -> Tensor:
    """Negative ELBO per training sample: ``CE(logits, y) + kl_weight * KL / num_train``."""
    if num_train < 1:
        raise ValueError(f"num_train must be >= 1, got {num_train}.")
    return F.cross_entropy(logits, y) + kl_weight * bayes_kl(model) / num_train


def bayes_mlp(in_features: int, num_classes: int, hidden: Sequence[int] = (128,),
              prior_sigma: float = 1.0) -> nn.Sequential:
    """Flatten → [BayesLinear → ReLU] * len(hidden) → BayesLinear."""
    layers: list[nn.Module] = [nn.Flatten(1)]
    width = in_features
    for h in hidden:
        layers += [BayesLinear(width, h, prior_sigma), nn.ReLU()]
        width = h
    layers.append(BayesLinear(width, num_classes, prior_sigma))
    return nn.Sequential(*layers)


# --------------------------------------------------------------------------- predictive probs


def enable_dropout(model: nn.Module) -> None:
    """Eval mode for everything except dropout layers (MC dropout at test time)."""
    model.eval()
    for m in model.modules():
        if isinstance(m, nn.modules.dropout._DropoutNd):
            m.train()


@torch.no_grad()
def mc_probs(model: nn.Module, x: Tensor, samples: int = 20, mc_dropout: bool = True
             ) -> Tensor:
    """Mean softmax (N, K) over ``samples`` stochastic forward passes.

    With ``mc_dropout`` dropout stays on (Gal & Ghahramani 2016); a model with
    :class:`BayesLinear` layers samples weights on every pass either way.
    """
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}.")
    if mc_dropout and not any(isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0
                              for m in model.modules()):
        raise ValueError("MC dropout needs a model with dropout (p > 0).")
    with eval_mode(model):
        if mc_dropout:
            enable_dropout(model)
        return torch.stack([model(x).softmax(-1) for _ in range(samples)]).mean(0)


@torch.no_grad()
def ensemble_probs(models: Sequence[nn.Module], x: Tensor) -> Tensor:
    """Mean softmax (N, K) of the members (Lakshminarayanan et al. 2017)."""
    if not models:
        raise ValueError("An ensemble needs at least one model.")
    out = []
    for m in models:
        with eval_mode(m):
            out.append(m(x).softmax(-1))
    return torch.stack(out).mean(0)


# --------------------------------------------------------------------------- temperature scaling


def fit_temperature(logits: Tensor, y: Tensor, max_iter: int = 100) -> float:
    """The temperature T > 0 minimising the NLL of ``softmax(logits / T)`` (Guo et al. 2017).

    Args:
        logits: (N, K) validation logits (detached); y: (N,) labels.
        max_iter: L-BFGS iterations on log T.
    """
    if logits.ndim != 2 or y.shape != logits.shape[:1]:
        raise ValueError(f"fit_temperature needs logits (N, K) and y (N,), got "
                         f"{tuple(logits.shape)} and {tuple(y.shape)}.")
    logits = logits.detach().double()
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.5, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.detach().exp())


class TemperatureScaled(nn.Module):
    """``model(x) / temperature``: a calibrated wrapper with the same predictions."""

    def __init__(self, model: nn.Module, temperature: float) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}.")
        self.model, self.temperature = model, temperature

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x) / self.temperature


# --------------------------------------------------------------------------- metrics


def nll(probs: Tensor, y: Tensor, eps: float = 1e-12) -> float:
    """Mean negative log-likelihood of (N, K) probabilities at the (N,) labels."""
    if probs.ndim != 2 or y.shape != probs.shape[:1]:
        raise ValueError(f"nll needs probs (N, K) and y (N,), got {tuple(probs.shape)} and "
                         f"{tuple(y.shape)}.")
    return float(-probs.gather(1, y[:, None]).clamp_min(eps).log().mean())


def predictive_entropy(probs: Tensor, eps: float = 1e-12) -> Tensor:
    """Entropy (N,) of each predictive distribution (higher = more uncertain)."""
    return -(probs * probs.clamp_min(eps).log()).sum(-1)


def ood_auroc(score_in: Tensor, score_out: Tensor) -> float:
    """AUROC of telling OOD (label 1) from in-distribution (label 0) samples by ``score``
    (higher = more likely OOD): 0.5 is chance, 1.0 perfect separation."""
    from sklearn.metrics import roc_auc_score

    if score_in.numel() == 0 or score_out.numel() == 0:
        raise ValueError("ood_auroc needs at least one in-distribution and one OOD score.")
    scores = torch.cat([score_in.flatten(), score_out.flatten()]).double().numpy()
    labels = [0] * score_in.numel() + [1] * score_out.numel()
    return float(roc_auc_score(labels, scores))


def classification_uncertainty(probs_in: Tensor, y_in: Tensor, probs_out: Tensor | None = None,
                               n_bins: int = 15) -> dict[str, float]:
    """Accuracy, mean confidence, NLL, ECE, over-confidence (confidence − accuracy) and, given OOD
    probabilities, the AUROC of the max-probability and entropy scores."""
    conf = probs_in.max(-1).values
    acc = float((probs_in.argmax(-1) == y_in).float().mean())
    out = {"accuracy": acc, "confidence": float(conf.mean()), "nll": nll(probs_in, y_in),
           "ece": expected_calibration_error(probs_in, y_in, n_bins),
           "overconfidence": float(conf.mean()) - acc}
    if probs_out is not None:
        out["ood_auroc"] = ood_auroc(-conf, -probs_out.max(-1).values)
        out["ood_auroc_entropy"] = ood_auroc(predictive_entropy(probs_in),
                                             predictive_entropy(probs_out))
    return out


def reliability_diagram(probs: Tensor, y: Tensor, n_bins: int = 15) -> dict[str, list[float]]:
    """Reliability-diagram data (bin edges, mean confidence, accuracy, count per bin) as lists,
    from :func:`dltricks.train.metrics.reliability_bins`; NaN marks an empty bin."""
    return {k: [float(v) for v in arr] for k, arr in reliability_bins(probs, y, n_bins).items()}


def interval_coverage(mean: Tensor, std: Tensor, y: Tensor, level: float = 0.95) -> float:
    """Fraction of ``y`` inside the central ``level`` Gaussian interval ``mean ± z σ``."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}.")
    if (std < 0).any():
        raise ValueError("std must be non-negative.")
    z = float(torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor((1 + level) / 2)))
    return float(((y - mean).abs() <= z * std).float().mean())


def gaussian_nll(mean: Tensor, var: Tensor, y: Tensor) -> float:
    """Mean Gaussian negative log-likelihood of ``y`` under N(mean, var)."""
    var = var.clamp_min(1e-12)
    return float((0.5 * (var.log() + (y - mean) ** 2 / var + math.log(2 * math.pi))).mean())


def train_classifier(model: nn.Module, x: Tensor, y: Tensor, steps: int, lr: float = 1e-3,
                     batch_size: int = 64, weight_decay: float = 0.0, seed: int = 0,
                     loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None) -> list[float]:
    """A plain Adam loop over random batches (for ensembles members and small experiments).

    ``loss_fn(logits, y)`` defaults to cross-entropy; pass e.g. a closure over
    :func:`elbo_loss` for Bayes by Backprop.
    """
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = loss_fn or F.cross_entropy
    model.train()
    losses = []
    for _ in range(steps):
        idx = torch.randint(len(y), (min(batch_size, len(y)),), generator=g)
        loss = loss_fn(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


__all__ = [
    "BayesLinear",
    "GPFit",
    "GPNumericalError",
    "TemperatureScaled",
    "bayes_kl",
    "bayes_mlp",
    "classification_uncertainty",
    "elbo_loss",
    "enable_dropout",
    "ensemble_probs",
    "fit_gp",
    "fit_temperature",
    "gaussian_nll",
    "interval_coverage",
    "mc_probs",
    "nll",
    "ood_auroc",
    "predictive_entropy",
    "reliability_diagram",
    "train_classifier",
]
