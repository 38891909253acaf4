from __future__ import annotations

import pytest
import torch

from budgetnas.trainers.data import load_test, load_train_val, split_indices
from budgetnas.trainers.datasets import DataError, dataset_info
from tests.helpers import write_synthetic_mnist


def test_split_is_fixed_disjoint_and_complete():
    tr, va = split_indices(100, val_size=20, seed=0)
    tr2, va2 = split_indices(100, val_size=20, seed=0)
    assert torch.equal(tr, tr2) and torch.equal(va, va2)
    assert len(va) == 20 and len(tr) == 80
    assert sorted(torch.cat([tr, va]).tolist()) == list(range(100))
    assert not torch.equal(split_indices(100, val_size=20, seed=1)[1], va)


def test_load_train_val_shapes_and_subset(synthetic_root):
    data = load_train_val("mnist", data_dir=synthetic_root, val_size=200, train_subset=300)
    assert data.train.x.shape == (300, 1, 28, 28) and data.train.x.dtype == torch.uint8
    assert data.val.x.shape == (200, 1, 28, 28)
    assert data.train.y.dtype == torch.int64
    # the validation split does not depend on the subset
    full = load_train_val("mnist", data_dir=synthetic_root, val_size=200)
    assert torch.equal(full.val.y, data.val.y) and len(full.train) == 1000
    assert len(load_test("mnist", data_dir=synthetic_root)) == 300


def test_resize_scales_the_built_in_sets(synthetic_root, tmp_path):
    """--resize 16 on MNIST: every split is 16x16 and so is the space the search counts and
    builds in; the images are the 28x28 ones, scaled; the run's fingerprint says so."""
    import torch.nn.functional as F

    from tests.helpers import quick_config

    cfg = quick_config(synthetic_root, tmp_path / "run", resize=16)
    assert cfg.data.info.image_size == 16 and cfg.space_config.input_size == 16
    assert cfg.data.fingerprint()["resize"] == 16
    data = cfg.data.load()
    assert data.train.x.shape == (300, 1, 16, 16) and data.val.x.shape == (100, 1, 16, 16)
    assert cfg.data.load_test().x.shape == (300, 1, 16, 16)
    plain = load_train_val("mnist", data_dir=synthetic_root, val_size=100)
    scaled = F.interpolate(plain.val.x.float(), size=(16, 16), mode="bilinear", antialias=True)
    assert torch.equal(data.val.x, scaled.round().clamp(0, 255).to(torch.uint8))
    # a run made without --resize keeps the fingerprint it had
    assert "resize" not in quick_config(synthetic_root, tmp_path / "r2").data.fingerprint()


def test_missing_data_names_folder_and_files(tmp_path):
    with pytest.raises(DataError) as err:
        load_train_val("mnist", data_dir=tmp_path)
    msg = str(err.value)
    assert str(tmp_path / "MNIST" / "raw") in msg
    assert "train-images-idx3-ubyte" in msg and "t10k-labels-idx1-ubyte" in msg
    assert "\n" not in msg


def test_wrong_magic_is_a_data_error(tmp_path):
    root = write_synthetic_mnist(tmp_path, n_train=50, n_test=10)
    path = root / "MNIST" / "raw" / "train-images-idx3-ubyte"
    path.write_bytes(b"\x00\x00\x09\x09" + path.read_bytes()[4:])
    with pytest.raises(DataError, match="could not read the IDX files"):
        load_train_val("mnist", data_dir=root, val_size=10)


def test_unknown_dataset():
    with pytest.raises(DataError, match="unknown dataset 'cifar'; choose one of mnist"):
        dataset_info("cifar")
    assert dataset_info("Fashion_MNIST").torchvision_class == "FashionMNIST"


def test_real_mnist_split_sizes(mnist_root):
    data = load_train_val("mnist", data_dir=mnist_root)
    assert len(data.train) == 55_000 and len(data.val) == 5_000
    assert len(load_test("mnist", data_dir=mnist_root)) == 10_000
