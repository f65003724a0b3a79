"""Experiments on the guide's CNN, receptive-field, pooling, segmentation and skip tips."""
