"""Learning paradigms built on dltricks.train: import the submodules explicitly
(``from dltricks.methods import metric, zeroshot, meta, bayes``)."""
