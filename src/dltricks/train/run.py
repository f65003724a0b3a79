"""The run folder: one place for everything a training run produces.

::

    runs/<name>-<timestamp>/
        recipe.yaml       the resolved recipe (after overrides), enough to reproduce the run
        metrics.jsonl     one JSON record per log/eval event (train, val, test)
        checkpoints/      see :mod:`dltricks.train.checkpoint`
        summary.json      final metrics, written at the end
        tb/               TensorBoard events, when tensorboard is installed
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from dltricks.train.checkpoint import atomic_write_text


def new_run_dir(root: str | Path, name: str) -> Path:
    """A fresh, uniquely named folder under ``root``."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for i in range(1000):
        path = root / (f"{name}-{stamp}" + (f"-{i}" if i else ""))
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"Could not create a unique run folder under {root}.")


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/Inf; keep them readable
    return value


class MetricsLog:
    """Appends records to ``metrics.jsonl`` and mirrors scalars to TensorBoard if available.

    Args:
        run_dir: the run folder.
        tensorboard: write TensorBoard events when the package is installed.
    """

    def __init__(self, run_dir: Path, tensorboard: bool = True) -> None:
        self.path = Path(run_dir) / "metrics.jsonl"
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional
                SummaryWriter = None
            if SummaryWriter is not None:
                self._tb = SummaryWriter(log_dir=str(Path(run_dir) / "tb"))

    def write(self, record: dict[str, Any]) -> None:
        record = {k: _clean(v) for k, v in record.items()}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self._tb is not None:
            split, step = record.get("split", "train"), record.get("step", 0)
            for k, v in record.items():
                if k not in ("split", "step", "epoch") and isinstance(v, int | float):
                    self._tb.add_scalar(f"{split}/{k}", v, step)

    def truncate_after(self, step: int) -> int:
        """Drops records logged after ``step`` (a resumed run re-creates them); returns how many."""
        records = read_metrics(self.path)
        keep = [r for r in records if r.get("step", 0) <= step]
        text = "".join(json.dumps(r) + "\n" for r in keep)
        atomic_write_text(self.path, text)
        return len(records) - len(keep)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Records of a metrics.jsonl file; a torn last line (from a kill) is ignored."""
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out
