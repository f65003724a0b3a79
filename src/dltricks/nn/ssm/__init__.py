"""State-space layers: the selective scan of Mamba (reference, fused CPU kernel, CUDA)."""

from dltricks.nn.ssm.reference import selective_scan_ref
from dltricks.nn.ssm.selective_scan import selective_scan

__all__ = ["selective_scan", "selective_scan_ref"]
