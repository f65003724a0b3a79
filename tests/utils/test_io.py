import json
import threading

import pytest

from dltricks.utils.io import TMP_PREFIX, atomic_write_bytes, atomic_write_json, atomic_write_text


def test_text_replaces_content_and_leaves_no_temp(tmp_path):
    f = tmp_path / "a.txt"
    atomic_write_text(f, "one")
    atomic_write_text(f, "twö")
    assert f.read_text(encoding="utf-8") == "twö"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_bytes_and_json_round_trip(tmp_path):
    atomic_write_bytes(tmp_path / "b.bin", b"\x00\xff")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\xff"
    atomic_write_json(tmp_path / "c.json", {"x": [1, 2.5], "p": tmp_path})
    assert json.loads((tmp_path / "c.json").read_text()) == {"x": [1, 2.5], "p": str(tmp_path)}


def test_failed_write_keeps_previous_content_and_removes_temp(tmp_path):
    f = tmp_path / "c.json"
    atomic_write_json(f, {"ok": 1})
    with pytest.raises(TypeError):
        atomic_write_json(f, {"bad": object()}, default=None)
    assert json.loads(f.read_text()) == {"ok": 1}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(TMP_PREFIX)]


def test_concurrent_writers_never_tear_the_file(tmp_path):
    f = tmp_path / "shared.txt"
    texts = [str(i) * 20000 for i in range(8)]
    threads = [threading.Thread(target=atomic_write_text, args=(f, t)) for t in texts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert f.read_text() in texts  # whole content of one writer, not a mix
    assert [p.name for p in tmp_path.iterdir()] == ["shared.txt"]


def test_bad_arguments_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="needs a str"):
        atomic_write_text(tmp_path / "x", b"bytes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs bytes"):
        atomic_write_bytes(tmp_path / "x", "text")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="does not exist"):
        atomic_write_text(tmp_path / "missing" / "x", "t")


def test_scratch_writes_skip_fsync_but_stay_atomic_and_restore(tmp_path, monkeypatch):
    """Inside scratch_writes no fsync happens (files and folders), the rename still does, and
    the durable setting comes back after the block, also when the block raises."""
    import os

    import torch

    from dltricks.train.checkpoint import save_checkpoint
    from dltricks.utils import io

    calls: list[int] = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(fd), real(fd))[1])

    io.atomic_write_text(tmp_path / "a.txt", "durable")
    assert len(calls) >= 2  # the file and its folder
    calls.clear()
    with io.scratch_writes():
        io.atomic_write_text(tmp_path / "b.txt", "scratch")
        save_checkpoint(tmp_path / "ckpt", 1, torch.nn.Linear(2, 2), {"step": 1})
    assert calls == []
    assert (tmp_path / "b.txt").read_text() == "scratch"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(io.TMP_PREFIX)]
    assert (tmp_path / "ckpt" / "step_00000001" / "meta.json").is_file()

    with pytest.raises(RuntimeError), io.scratch_writes():
        raise RuntimeError("boom")
    io.atomic_write_text(tmp_path / "c.txt", "durable again")
    assert len(calls) >= 2


@pytest.mark.parametrize("name,text,message", [
    ("a.yaml", "x: [1,", "not valid YAML"),
    ("a.json", "{1:", "not valid JSON"),
    ("a.yaml", "- 1\n- 2\n", "must hold a mapping"),
    ("a.json", "[1]", "must hold a mapping"),
])
def test_read_mapping_file_names_the_file_and_the_fault(tmp_path, name, text, message):
    from dltricks.utils.io import read_mapping_file

    (tmp_path / name).write_text(text)
    with pytest.raises(KeyError, match=message) as err:
        read_mapping_file(tmp_path / name, "Thing", KeyError)
    assert name in str(err.value)


def test_read_mapping_file_reads_yaml_and_json_and_reports_missing(tmp_path):
    from dltricks.utils.io import read_mapping_file

    (tmp_path / "a.yaml").write_text("a: 1\nb: [x, y]\n")
    (tmp_path / "a.json").write_text('{"a": 1, "b": ["x", "y"]}')
    assert read_mapping_file(tmp_path / "a.yaml", "T") == read_mapping_file(tmp_path / "a.json",
                                                                             "T")
    with pytest.raises(FileNotFoundError, match=r"Thing .*b\.json' does not exist"):
        read_mapping_file(tmp_path / "b.json", "Thing", missing=FileNotFoundError)
