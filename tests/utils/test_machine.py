import os
import sys

import numpy as np
import torch

import dltricks
from dltricks.utils.machine import machine_info


def test_machine_info_reports_this_process():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        info = machine_info()
    finally:
        torch.set_num_threads(before)
    assert info["torch_threads"] == "1"
    assert info["cores"] == str(os.cpu_count())
    assert info["torch"] == torch.__version__
    assert info["numpy"] == np.__version__
    assert info["dltricks"] == dltricks.__version__
    assert info["python"] == sys.version.split()[0]
    assert all(isinstance(v, str) and v for v in info.values())
    if hasattr(os, "getloadavg"):
        assert len(info["load_average"].split()) == 3
