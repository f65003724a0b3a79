"""Checkpoints: atomic writes, hash verification, fallback, retention, no unpickling."""


import pytest
import torch
from torch import nn

from dltricks.train import checkpoint as ckpt


def _model(seed=0):
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))
    return m


def _save(d, step, seed=0):
    return ckpt.save_checkpoint(d, step, _model(seed), {"loop": {"step": step},
                                                        "t": torch.arange(3)}, {"epoch": 1})


def test_round_trip_restores_weights_and_state(tmp_path):
    m = _model(1)
    path = ckpt.save_checkpoint(tmp_path, 7, m, {"x": torch.ones(2), "n": 3}, {"epoch": 2})
    assert path.name == "step_00000007"
    found = ckpt.verify(path)
    assert found.step == 7 and found.meta["epoch"] == 2
    m2 = _model(2)
    found.load_model(m2)
    for a, b in zip(m.state_dict().values(), m2.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert found.load_state()["n"] == 3


def test_tied_weights_are_saved(tmp_path):
    emb = nn.Embedding(5, 3)
    head = nn.Linear(3, 5, bias=False)
    head.weight = emb.weight
    model = nn.ModuleDict({"emb": emb, "head": head})
    path = ckpt.save_checkpoint(tmp_path, 1, model, {})
    fresh = nn.ModuleDict({"emb": nn.Embedding(5, 3), "head": nn.Linear(3, 5, bias=False)})
    fresh.head.weight = fresh.emb.weight
    ckpt.verify(path).load_model(fresh)
    assert torch.equal(fresh.head.weight, emb.weight)


def test_wrong_architecture_is_a_clear_error(tmp_path):
    path = _save(tmp_path, 1)
    with pytest.raises(ckpt.CheckpointError, match="does not fit the model"):
        ckpt.verify(path).load_model(nn.Linear(4, 2))


def test_truncated_newest_falls_back_to_previous(tmp_path):
    _save(tmp_path, 1)
    newest = _save(tmp_path, 2)
    data = (newest / "model.safetensors").read_bytes()
    (newest / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.warns(UserWarning, match=r"model.safetensors is truncated or corrupted"):
        found = ckpt.latest_valid(tmp_path)
    assert found is not None and found.step == 1


def test_bit_flip_and_missing_meta_detected(tmp_path):
    p = _save(tmp_path, 3)
    raw = bytearray((p / "state.pt").read_bytes())
    raw[-20] ^= 0xFF
    (p / "state.pt").write_bytes(bytes(raw))
    with pytest.raises(ckpt.CheckpointError, match=r"state\.pt"):
        ckpt.verify(p)
    (p / "meta.json").unlink()
    with pytest.raises(ckpt.CheckpointError, match=r"meta\.json"):
        ckpt.verify(p)


def test_interrupted_write_leaves_no_checkpoint(tmp_path):
    _save(tmp_path, 1)
    # what a kill during save_checkpoint leaves behind: a hidden temporary folder
    tmp = tmp_path / ".tmp-step_00000002"
    tmp.mkdir()
    (tmp / "model.safetensors").write_bytes(b"partial")
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step_00000001"]
    assert ckpt.latest_valid(tmp_path).step == 1
    ckpt.prune(tmp_path, keep_last=5)
    assert not tmp.exists()


def test_state_is_never_unpickled(tmp_path):
    """A state.pt holding arbitrary pickled objects is refused even with valid hashes."""
    p = _save(tmp_path, 1)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"payload": Evil()}, p / "state.pt")
    meta = (p / "meta.json").read_text()
    import json

    info = json.loads(meta)
    info["files"]["state.pt"] = ckpt._sha256(p / "state.pt")
    (p / "meta.json").write_text(json.dumps(info))
    with pytest.raises(ckpt.CheckpointError, match=r"cannot be loaded safely.*UnpicklingError"):
        ckpt.verify(p).load_state()
    # a newer tampered checkpoint is skipped (with a warning) in favour of the previous good one
    _save(tmp_path, 0)
    with pytest.warns(UserWarning, match="cannot be loaded safely"):
        found, state = ckpt.load_latest(tmp_path, lambda c: c.load_state())
    assert found.step == 0 and "payload" not in state


def test_prune_keeps_last_k_and_protected(tmp_path):
    for s in range(1, 7):
        _save(tmp_path, s)
    removed = ckpt.prune(tmp_path, keep_last=2, protect={3})
    left = [p.name for p in ckpt.list_checkpoints(tmp_path)]
    assert left == ["step_00000003", "step_00000005", "step_00000006"]
    assert len(removed) == 3


def test_atomic_write_text_replaces(tmp_path):
    f = tmp_path / "a.txt"
    ckpt.atomic_write_text(f, "one")
    ckpt.atomic_write_text(f, "two")
    assert f.read_text() == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_empty_folder_has_no_checkpoint(tmp_path):
    assert ckpt.latest_valid(tmp_path / "none") is None
