"""dltricks: a deep-learning tips & tricks guide made executable."""

__version__ = "0.1.0"
