"""Search: hyperparameter studies on Optuna (:mod:`~dltricks.search.tune`, search spaces in
:mod:`~dltricks.search.space`) and neural architecture search (:mod:`~dltricks.search.nas`)."""

from dltricks.search.space import ParamSpec, SearchSpace, SpaceError
from dltricks.search.tune import TuneConfig, best_so_far, tune

__all__ = ["ParamSpec", "SearchSpace", "SpaceError", "TuneConfig", "best_so_far", "tune"]
