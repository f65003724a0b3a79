"""Built-in experiments; importing this package registers them in ``EXPERIMENTS``.

One module per group of tips. To add a group, write a module that calls
:func:`~dltricks.lab.experiment.register_experiment` and import it here.
"""

from dltricks.lab.experiments import (
    cnn,
    compress,
    mamba_vs_transformer,
    paradigms_i,
    paradigms_ii,
    search,
    training,
    transformers,
)

__all__ = ["cnn", "compress", "mamba_vs_transformer", "paradigms_i", "paradigms_ii", "search",
           "training", "transformers"]
