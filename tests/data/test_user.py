"""User-data loaders: happy paths, and every error names the offending file or field."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from dltricks.data import create_dataset


def _image_folder(root, classes=("cat", "dog"), per_class=5, size=(10, 12)):
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            arr = np.full((*size, 3), 40 * c + i, dtype=np.uint8)
            Image.fromarray(arr).save(root / name / f"{i}.png")
    return root


# ---------------------------------------------------------------- image_folder
@pytest.mark.parametrize("channels", [1, 3])
def test_image_folder_loads_resizes_and_labels(tmp_path, channels):
    root = _image_folder(tmp_path / "imgs")
    (root / "cat" / "notes.txt").write_text("not an image")  # ignored by extension
    s = create_dataset("image_folder", path=root, channels=channels, image_size=8)
    assert s.input_shape == (channels, 8, 8) and s.spatial_dims == 2
    assert s.class_names == ["cat", "dog"] and s.num_classes == 2
    assert sum(s.sizes().values()) == 10
    x = torch.cat([s.train.x, s.val.x, s.test.x])
    y = torch.cat([s.train.y, s.val.y, s.test.y])
    assert x.dtype == torch.float32 and x.min() >= 0 and x.max() <= 1
    # class 1 images are brighter by 40 grey levels (plus up to 4)
    assert x[y == 1].mean() - x[y == 0].mean() == pytest.approx(40 / 255, abs=1e-3)
    assert torch.bincount(s.train.y).tolist() == [3, 3]  # stratified


def test_image_folder_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        create_dataset("image_folder", path=tmp_path / "nowhere")


def test_image_folder_needs_path():
    with pytest.raises(ValueError, match="path"):
        create_dataset("image_folder")


def test_image_folder_empty_folder(tmp_path):
    with pytest.raises(ValueError, match="no class subfolders"):
        create_dataset("image_folder", path=tmp_path)


def test_image_folder_class_without_images(tmp_path):
    root = _image_folder(tmp_path / "imgs")
    (root / "empty_class").mkdir()
    with pytest.raises(ValueError, match="empty_class"):
        create_dataset("image_folder", path=root)


def test_image_folder_corrupt_image(tmp_path):
    root = _image_folder(tmp_path / "imgs")
    (root / "dog" / "broken.png").write_bytes(b"\x89PNG this is not really a png")
    with pytest.raises(ValueError, match=r"broken\.png"):
        create_dataset("image_folder", path=root)


def test_image_folder_bad_channels(tmp_path):
    with pytest.raises(ValueError, match="channels"):
        create_dataset("image_folder", path=_image_folder(tmp_path / "i"), channels=2)


# ---------------------------------------------------------------- arrays
def test_arrays_npz_images(tmp_path):
    x = np.random.default_rng(0).normal(size=(40, 2, 6, 6)).astype(np.float32)
    y = np.arange(40) % 4
    np.savez(tmp_path / "d.npz", x=x, y=y)
    s = create_dataset("arrays", path=tmp_path / "d.npz")
    assert s.input_shape == (2, 6, 6) and s.spatial_dims == 2 and s.num_classes == 4
    assert s.task == "classification" and sum(s.sizes().values()) == 40
    # rows keep their labels
    idx = [int(np.where((x == r.numpy()).all(axis=(1, 2, 3)))[0][0]) for r in s.test.x]
    assert s.test.y.tolist() == [int(y[i]) for i in idx]


def test_arrays_csv_with_header_and_label_column(tmp_path):
    p = tmp_path / "t.csv"
    lines = ["a,label,b"] + [f"{i},{i % 3},{2 * i}" for i in range(30)]
    p.write_text("\n".join(lines) + "\n")
    s = create_dataset("arrays", path=p, label_column="label")
    assert s.input_shape == (2,) and s.spatial_dims == 0 and s.num_classes == 3
    x = torch.cat([s.train.x, s.val.x, s.test.x])
    y = torch.cat([s.train.y, s.val.y, s.test.y])
    assert torch.equal(x[:, 1], 2 * x[:, 0])
    assert torch.equal(y, x[:, 0].long() % 3)


def test_arrays_csv_last_column_default(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("\n".join(f"{i}.5,{i % 2}" for i in range(20)))
    s = create_dataset("arrays", path=p)
    assert s.num_classes == 2 and s.input_shape == (1,)


@pytest.mark.parametrize(("arrays", "match"), [
    ({"x": np.zeros((5, 3))}, "'y'"),
    ({"y": np.zeros(5)}, "'x'"),
    ({"x": np.zeros((5, 3)), "y": np.zeros(4)}, "mismatched lengths"),
    ({"x": np.zeros((5, 3)), "y": np.array([0, 1, 2, -1, 0])}, "negative"),
    ({"x": np.zeros((5, 3)), "y": np.array([0, 1, 0.5, 1, 0])}, "non-integer"),
    ({"x": np.zeros((5, 3)), "y": np.zeros((5, 2))}, "'y'"),
    ({"x": np.full((5, 3), np.nan), "y": np.zeros(5)}, "'x'"),
])
def test_arrays_npz_errors_name_file_and_field(tmp_path, arrays, match):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match=match) as err:
        create_dataset("arrays", path=tmp_path / "bad.npz")
    assert "bad.npz" in str(err.value)


def test_arrays_corrupt_npz(tmp_path):
    (tmp_path / "junk.npz").write_bytes(b"definitely not a zip file")
    with pytest.raises(ValueError, match=r"junk\.npz.*not a zip archive.*numpy\.savez") as err:
        create_dataset("arrays", path=tmp_path / "junk.npz")
    assert "pickle" not in str(err.value)  # numpy's own message suggests allow_pickle


def test_arrays_npy_saved_as_npz_is_named(tmp_path):
    with (tmp_path / "one.npz").open("wb") as fh:
        np.save(fh, np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"single \.npy array"):
        create_dataset("arrays", path=tmp_path / "one.npz")


def test_labels_with_gaps_warn_and_keep_k(tmp_path):
    np.savez(tmp_path / "gap.npz", x=np.random.rand(30, 4), y=np.array([0, 1, 1000] * 10))
    with pytest.warns(UserWarning, match=r"3 distinct labels \(0, 1, 1000\).*1001 classes, "
                      r"998 of them without samples"):
        s = create_dataset("arrays", path=tmp_path / "gap.npz")
    assert s.num_classes == 1001  # never remapped


def test_single_class_warns(tmp_path):
    np.savez(tmp_path / "one.npz", x=np.random.rand(12, 4), y=np.full(12, 3))
    with pytest.warns(UserWarning, match=r"single class \(3\)"):
        create_dataset("arrays", path=tmp_path / "one.npz")
    _image_folder(tmp_path / "imgs", classes=("only",), per_class=4)
    with pytest.warns(UserWarning, match="single class folder"):
        create_dataset("image_folder", path=tmp_path / "imgs", fractions=(0.5, 0.5, 0.0))


def test_contiguous_labels_do_not_warn(tmp_path, recwarn):
    np.savez(tmp_path / "ok.npz", x=np.random.rand(30, 4), y=np.arange(30) % 3)
    create_dataset("arrays", path=tmp_path / "ok.npz")
    assert not [w for w in recwarn if issubclass(w.category, UserWarning)]


def test_unknown_dataset_kwarg_names_allowed_ones():
    with pytest.raises(ValueError, match=r"'digits' does not take 'bogus_kw'; it takes: fractions"):
        create_dataset("digits", bogus_kw=1)


def test_arrays_csv_errors(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("1,2,0\n3,x,1\n")
    with pytest.raises(ValueError, match=r"t\.csv.*line 2"):
        create_dataset("arrays", path=p)
    p.write_text("a,b,c\n1,2,0\n")
    with pytest.raises(ValueError, match="'target'"):
        create_dataset("arrays", path=p, label_column="target")
    p.write_text("1,2,0\n3,4\n")
    with pytest.raises(ValueError, match="line 2"):
        create_dataset("arrays", path=p)


def test_arrays_wrong_suffix_and_missing(tmp_path):
    (tmp_path / "d.txt").write_text("1,2")
    with pytest.raises(ValueError, match=r"d\.txt"):
        create_dataset("arrays", path=tmp_path / "d.txt")
    with pytest.raises(FileNotFoundError, match=r"none\.npz"):
        create_dataset("arrays", path=tmp_path / "none.npz")


# ---------------------------------------------------------------- volumes
def _volumes(root, n=6, shape=(4, 5, 6), channels=None):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        vol_shape = shape if channels is None else (channels, *shape)
        np.save(root / "images" / f"v{i}.npy", rng.normal(size=vol_shape).astype(np.float32))
        np.save(root / "masks" / f"v{i}.npy", (rng.random(shape) * 3).astype(np.int64))
    return root


@pytest.mark.parametrize("channels", [None, 2])
def test_volumes_happy_path(tmp_path, channels):
    root = _volumes(tmp_path / "vol", channels=channels)
    s = create_dataset("volumes", path=root)
    c = channels or 1
    assert s.task == "segmentation" and s.spatial_dims == 3
    assert s.input_shape == (c, 4, 5, 6) and s.num_classes == 3
    assert s.train.y.shape[1:] == (4, 5, 6) and s.train.y.dtype == torch.long
    assert sum(s.sizes().values()) == 6


def test_volumes_with_empty_masks_warn(tmp_path):
    root = _volumes(tmp_path / "vol")
    for m in (root / "masks").glob("*.npy"):
        np.save(m, np.zeros((4, 5, 6), dtype=np.int64))
    with pytest.warns(UserWarning, match="single label 0"):
        create_dataset("volumes", path=root)


def test_volume_without_mask(tmp_path):
    root = _volumes(tmp_path / "vol")
    (root / "masks" / "v3.npy").unlink()
    with pytest.raises(ValueError, match=r"v3\.npy"):
        create_dataset("volumes", path=root)


def test_volume_mask_shape_mismatch(tmp_path):
    root = _volumes(tmp_path / "vol")
    np.save(root / "masks" / "v2.npy", np.zeros((4, 5, 5), dtype=np.int64))
    with pytest.raises(ValueError, match=r"v2\.npy.*shape"):
        create_dataset("volumes", path=root)


def test_volume_mask_values_out_of_range(tmp_path):
    root = _volumes(tmp_path / "vol")
    with pytest.raises(ValueError, match=r"masks.*v0\.npy.*outside \[0, 2\)"):
        create_dataset("volumes", path=root, num_classes=2)
    np.save(root / "masks" / "v1.npy", -np.ones((4, 5, 6), dtype=np.int64))
    with pytest.raises(ValueError, match=r"v1\.npy.*negative"):
        create_dataset("volumes", path=root)


def test_volumes_missing_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="images"):
        create_dataset("volumes", path=tmp_path)
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    with pytest.raises(ValueError, match=r"no \.npy files"):
        create_dataset("volumes", path=tmp_path)


def test_mask_without_volume(tmp_path):
    root = _volumes(tmp_path / "vol")
    np.save(root / "masks" / "orphan.npy", np.zeros((4, 5, 6), dtype=np.int64))
    with pytest.raises(ValueError, match=r"orphan\.npy"):
        create_dataset("volumes", path=root)


def test_arrays_csv_label_column_by_index(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("\n".join(f"{i % 2},{i}.0,{3 * i}" for i in range(20)))
    s = create_dataset("arrays", path=p, label_column=0)
    x = torch.cat([s.train.x, s.val.x, s.test.x])
    y = torch.cat([s.train.y, s.val.y, s.test.y])
    assert s.input_shape == (2,) and torch.equal(y, x[:, 0].long() % 2)
    with pytest.raises(ValueError, match="label_column 5"):
        create_dataset("arrays", path=p, label_column=5)
