"""A user's own images: a class-per-folder tree or an .npz, any channels, size and classes."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from budgetnas.search.cli import app
from budgetnas.search.handback.export import export_trial, import_module_from
from budgetnas.search.study.runs import open_run
from budgetnas.space.spec import ArchSpec, Conv, Head, Transition
from budgetnas.trainers.data import DataConfig
from budgetnas.trainers.datasets import DataError
from budgetnas.trainers.recipe import TrainConfig
from budgetnas.trainers.train import train
from tests.helpers import cli_error, shapes_arrays, write_image_folder, write_synthetic_mnist

runner = CliRunner()

QUICK = "--trials 2 --epochs 1 --batch-size 16 --device cpu --verify-seeds 0".split()


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """The same 150 colour images (32x32, 5 classes) as a folder and as an .npz."""
    root = tmp_path_factory.mktemp("shapes")
    x, y = shapes_arrays()
    folder = write_image_folder(root / "folder", x, y)
    npz = root / "shapes.npz"
    np.savez(npz, x=x, y=y)
    return folder, npz, x, y


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["folder", "npz"])
def test_a_search_runs_on_three_channel_images_and_exports(shapes, tmp_path, kind):
    folder, npz, x, y = shapes
    data = folder if kind == "folder" else npz
    run = tmp_path / "run"
    args = ["search", "--data", str(data), "--budget", "25k", "--out", str(run), *QUICK]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.stderr
    assert "has no test split: 15 of its images (10%, drawn with seed 0)" in result.stderr
    assert "note: no seed network takes 3x32x32 images with 5 classes under the cap" in (
        result.stderr
    )
    cfg, study = open_run(run)
    space = cfg.space_config
    assert (space.in_channels, space.input_size, space.num_classes) == (3, 32, 5)
    info = cfg.data.info
    assert info.train_size == 135 and cfg.data.val_images == 14 and cfg.data.train_images == 121
    train_x = x  # all 150, as written
    assert 0 < info.mean < 1 and space.norm == (info.mean, info.std)
    for t in study.trials:
        if "spec" in t.user_attrs:
            spec = ArchSpec.from_json(t.user_attrs["spec"])
            assert (spec.in_channels, spec.input_size, spec.num_classes) == (3, 32, 5)
    res = export_trial(run, out=tmp_path / "net.py")
    net = import_module_from(tmp_path / "net.py").load()
    images = torch.from_numpy(train_x[:8].transpose(0, 3, 1, 2)).float() / 255
    with torch.no_grad():
        assert net(images).shape == (8, 5)
    assert 0 <= res.test_acc <= 1
    pytest.importorskip("onnxruntime", reason="the deploy extra is not installed")
    from budgetnas.search.handback.deploy import onnx_logits

    onnx = export_trial(run, out=tmp_path / "net.onnx", format="onnx", int8=True)
    assert onnx.onnx.max_abs_diff < 1e-4
    with torch.no_grad():
        expected = net(images).numpy()
    assert np.abs(onnx_logits(tmp_path / "net.onnx", images.numpy()) - expected).max() < 1e-4
    assert onnx_logits(onnx.onnx.int8_path, images.numpy()).shape == (8, 5)


def test_normalisation_is_computed_from_the_training_part(shapes):
    _, npz, _, _ = shapes
    from budgetnas.trainers.data import split_indices

    cfg = DataConfig(path=str(npz))
    x, _, xt, _ = cfg._parts()
    assert len(x) == 135 and len(xt) == 15
    train, val = split_indices(135, val_size=cfg.val_images, seed=0)
    pixels = x[train.numpy()].astype(np.float64) / 255  # the validation images left out
    assert (len(train), len(val)) == (121, 14)
    assert cfg.info.mean == round(pixels.mean(), 4) and cfg.info.std == round(pixels.std(), 4)
    assert torch.equal(cfg.load().train.x, torch.from_numpy(x[train.numpy()]))


def _write_idx(path, array):
    header = struct.pack(">I", 0x0800 | array.ndim) + b"".join(
        struct.pack(">I", d) for d in array.shape
    )
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_mnist_as_a_folder_and_as_an_npz_loads_as_the_built_in_loader(tmp_path, mnist_root):
    """The same images three ways (MNIST's IDX files, an ImageFolder tree, an .npz): the same
    counts, and with the same seed the same first-epoch loss. The images are the first 1,200
    of MNIST sorted by label, so that a class-per-folder tree keeps their order."""
    from budgetnas.trainers.data import load_test, load_train_val

    full = load_train_val("mnist", data_dir=mnist_root, val_size=1)
    test = load_test("mnist", data_dir=mnist_root)
    images = torch.cat([full.train.x, full.val.x])[:1200]
    labels = torch.cat([full.train.y, full.val.y])[:1200]
    order = torch.sort(labels, stable=True).indices
    x, y = images[order, 0].numpy(), labels[order].numpy()
    xt, yt = test.x[:300, 0].numpy(), test.y[:300].numpy()
    raw = tmp_path / "idx" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    _write_idx(raw / "train-images-idx3-ubyte", x)
    _write_idx(raw / "train-labels-idx1-ubyte", y)
    _write_idx(raw / "t10k-images-idx3-ubyte", xt)
    _write_idx(raw / "t10k-labels-idx1-ubyte", yt)
    np.savez(tmp_path / "mnist.npz", x=x, y=y, x_test=xt, y_test=yt)
    write_image_folder(tmp_path / "folder" / "train", x, y, names=[str(i) for i in range(10)])
    write_image_folder(tmp_path / "folder" / "test", xt, yt, names=[str(i) for i in range(10)])
    configs = [
        DataConfig(dataset="mnist", data_dir=str(tmp_path / "idx"), val_size=200),
        DataConfig(path=str(tmp_path / "mnist.npz"), val_size=200),
        DataConfig(path=str(tmp_path / "folder"), val_size=200),
    ]
    spec = ArchSpec(blocks=(Conv(8, pad=1), Transition(8), Conv(12)), head=Head())
    recipe = TrainConfig(epochs=1, batch_size=64, seed=3)
    seen = []
    for cfg in configs:
        data, held_out = cfg.load(), cfg.load_test()
        info = cfg.info
        counts = (len(data.train), len(data.val), len(held_out), info.num_classes)
        shape = (info.in_channels, info.image_size)
        seen.append((counts, shape, train(spec, data, recipe).loss_curve[0]))
    assert seen[0][:2] == ((1000, 200, 300, 10), (1, 28))
    assert seen[1] == seen[0] and seen[2] == seen[0]


# ---- bad data: one line, nothing written -------------------------------------------------------


def _bad(tmp_path, data, *extra):
    out = tmp_path / "run"
    args = ["search", "--data", str(data), "--budget", "25k", "--out", str(out), *QUICK, *extra]
    line = cli_error(runner.invoke(app, args))
    assert not out.exists()  # nothing half-written
    return line


def _png(path, array):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


@pytest.mark.slow
def test_a_train_folder_without_a_test_folder(tmp_path):
    """DATA/train/<class> (and a val/ folder, which is not read): the training images, a
    test part held out, and the start of the search says both."""
    x, y = shapes_arrays(10, size=16, classes=3)
    write_image_folder(tmp_path / "data" / "train", x, y)
    write_image_folder(tmp_path / "data" / "val", x[:5], y[:5])
    run = tmp_path / "run"
    args = ["search", "--data", str(tmp_path / "data"), "--budget", "25k", "--out", str(run)]
    result = runner.invoke(app, [*args, *QUICK])
    assert result.exit_code == 0, result.stderr
    assert f"{tmp_path / 'data'}/val is not read" in result.stderr
    assert "has no test split: 3 of its images" in result.stderr
    cfg, _ = open_run(run)
    assert cfg.data.info.num_classes == 3 and cfg.data.info.train_size == 27


def test_sixteen_bit_images_are_scaled_not_clipped(tmp_path):
    from PIL import Image

    from budgetnas.trainers.sources import read_folder

    for label, value in (("dark", 1000), ("bright", 60000)):
        folder = tmp_path / "data" / label
        folder.mkdir(parents=True)
        Image.fromarray(np.full((8, 8), value, dtype=np.uint16)).save(folder / "1.png")
    arrays = read_folder(tmp_path / "data")
    assert sorted(int(v) for v in arrays.x[:, 0, 0, 0]) == [4, 233]  # 1000 and 60000 / 257


def _wide_png(path, value: int) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8), value, dtype=np.uint16)).save(path)
    assert Image.open(path).mode == "I;16"


def test_sixteen_bit_images_holding_eight_bit_values_keep_their_levels(tmp_path):
    """8-bit values saved as 16-bit PNGs (levels 20 and 100, up to 252) are read as 8-bit
    values, not as fractions of 65535 (which crushes them all to 0 and 1), in the training and
    the test part alike, and the note says how they were read."""
    from budgetnas.trainers.sources import read_folder

    for part, n in (("train", 3), ("test", 1)):
        for label, value in (("dark", 20), ("light", 100)):
            for i in range(n):
                _wide_png(tmp_path / "data" / part / label / f"{i}.png", value)
    _wide_png(tmp_path / "data" / "test" / "light" / "top.png", 252)
    arrays = read_folder(tmp_path / "data")
    assert arrays.x.dtype == np.uint8
    assert sorted(int(v) for v in arrays.x[:, 0, 0, 0]) == [20, 20, 20, 100, 100, 100]
    assert sorted(int(v) for v in arrays.x_test[:, 0, 0, 0]) == [20, 100, 252]
    assert arrays.note == "16-bit images with values up to 252: read as 8-bit values"
    cfg = DataConfig(path=str(tmp_path / "data"))
    assert cfg.test_note == "16-bit images with values up to 252: read as 8-bit values"


def test_the_bit_depth_is_the_whole_data_sets_training_and_test_parts_together(tmp_path):
    """The training part holds values up to 100, the test part one of 1000: every image is
    read as a 10-bit value (0-1023 to 0-255), the same scale in both parts."""
    from budgetnas.trainers.sources import read_folder

    for label, value in (("dark", 20), ("light", 100)):
        _wide_png(tmp_path / "data" / "train" / label / "1.png", value)
        _wide_png(tmp_path / "data" / "test" / label / "1.png", value)
    _wide_png(tmp_path / "data" / "test" / "light" / "2.png", 1000)
    arrays = read_folder(tmp_path / "data")
    scale = 255 / 1023
    assert [int(v) for v in arrays.x[:, 0, 0, 0]] == [round(20 * scale), round(100 * scale)]
    assert [int(v) for v in arrays.x_test[:, 0, 0, 0]] == [5, 25, round(1000 * scale)]
    assert arrays.note == (
        "16-bit images with values up to 1000: read as 10-bit values (0-1023 scaled to 0-255)"
    )


def test_float_images_in_zero_to_one_are_read_as_fractions(tmp_path):
    """Float images (mode F, as a float TIFF opens) holding 0.2 and 0.8 are read as fractions
    of full scale (51 and 204), not on the 0-255 scale that rounds them to 0 and 1; float
    images outside both 0-1 and 0-255 are one line naming a file."""
    from PIL import Image

    from budgetnas.trainers.sources import SourceError, read_folder

    for label, value in (("dark", 0.2), ("light", 0.8)):
        folder = tmp_path / "data" / label
        folder.mkdir(parents=True)
        Image.fromarray(np.full((8, 8), value, dtype=np.float32)).save(folder / "1.tif")
        assert Image.open(folder / "1.tif").mode == "F"
    arrays = read_folder(tmp_path / "data")
    assert sorted(int(v) for v in arrays.x[:, 0, 0, 0]) == [51, 204]
    assert arrays.note == "float images with values from 0.2 to 0.8: read as fractions of 1"
    Image.fromarray(np.full((8, 8), 300.0, dtype=np.float32)).save(
        tmp_path / "data" / "light" / "2.tif"
    )
    with pytest.raises(SourceError, match=r"2\.tif holds values up to 300"):
        read_folder(tmp_path / "data")


def test_wide_integer_images_outside_sixteen_bits_are_one_line(tmp_path):
    from PIL import Image

    from budgetnas.trainers.sources import SourceError, read_folder

    _wide_png(tmp_path / "data" / "a" / "1.png", 20)
    (tmp_path / "data" / "b").mkdir()
    Image.fromarray(np.full((8, 8), 70000, dtype=np.int32)).save(tmp_path / "data" / "b" / "1.tif")
    with pytest.raises(SourceError, match=r"b/1\.tif holds values up to 70000, outside 0-65535"):
        read_folder(tmp_path / "data")


def test_gray_gifs_are_read_as_one_channel(tmp_path):
    """A gray GIF is a palette image (mode P) whose colours are gray: one channel, its gray
    levels as they are; one colour GIF among them makes every image RGB."""
    from PIL import Image

    from budgetnas.trainers.sources import read_folder

    ramp = np.tile(np.arange(0, 256, 32, dtype=np.uint8), (8, 1))
    for label, image in (("a", ramp), ("b", ramp[::-1])):
        (tmp_path / "gray" / label).mkdir(parents=True)
        Image.fromarray(image).save(tmp_path / "gray" / label / "1.gif")
    assert Image.open(tmp_path / "gray" / "a" / "1.gif").mode == "P"
    arrays = read_folder(tmp_path / "gray")
    assert arrays.x.shape == (2, 1, 8, 8)
    assert np.array_equal(arrays.x[0, 0], ramp) and np.array_equal(arrays.x[1, 0], ramp[::-1])
    colour = np.stack([ramp, ramp[::-1], np.zeros_like(ramp)], axis=-1)
    Image.fromarray(colour).convert("P").save(tmp_path / "gray" / "b" / "2.gif")
    assert read_folder(tmp_path / "gray").x.shape == (3, 3, 8, 8)


def test_an_empty_folder(tmp_path):
    (tmp_path / "data").mkdir()
    line = _bad(tmp_path, tmp_path / "data")
    assert line.startswith(f"error: {tmp_path / 'data'} holds no images: put them in one folder")


def test_a_one_class_folder(tmp_path):
    _png(tmp_path / "data" / "cat" / "1.png", np.zeros((8, 8), np.uint8))
    line = _bad(tmp_path, tmp_path / "data")
    assert line == (
        f"error: {tmp_path / 'data'} holds one class (cat); a classifier needs at least two "
        "class folders"
    )


@pytest.mark.slow
def test_mixed_sizes_are_named_and_resize_offered(tmp_path):
    _png(tmp_path / "data" / "a" / "1.png", np.zeros((16, 16), np.uint8))
    _png(tmp_path / "data" / "b" / "2.png", np.zeros((20, 20), np.uint8))
    line = _bad(tmp_path, tmp_path / "data")
    assert line == (
        f"error: images in {tmp_path / 'data'} differ in size: 16x16 (a/1.png) and 20x20 "
        "(b/2.png); pass --resize N to scale them all to N x N"
    )
    x, y = shapes_arrays(6, size=16, classes=2)
    write_image_folder(tmp_path / "ok", x, y)
    _png(tmp_path / "ok" / "class0" / "big.png", np.zeros((20, 20, 3), np.uint8))
    out = tmp_path / "resized"
    args = ["search", "--data", str(tmp_path / "ok"), "--resize", "16", "--budget", "25k"]
    result = runner.invoke(app, [*args, "--out", str(out), *QUICK])
    assert result.exit_code == 0, result.stderr
    assert open_run(out)[0].space_config.input_size == 16


def test_an_unreadable_file_is_named(tmp_path):
    x, y = shapes_arrays(4, size=16, classes=2)
    write_image_folder(tmp_path / "data", x, y)
    (tmp_path / "data" / "class1" / "broken.png").write_bytes(b"not a png")
    line = _bad(tmp_path, tmp_path / "data")
    assert line.startswith(f"error: cannot read {tmp_path / 'data' / 'class1' / 'broken.png'}")


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"x": np.zeros((10, 8, 8), np.uint8)}, "lacks y: it needs x (uint8 images) and y"),
        (
            {"x": np.zeros((10, 8, 8), np.uint8), "y": np.zeros(10, np.int64)},
            "every label is 0; a classifier needs two classes",
        ),
        (
            {"x": np.zeros((10, 8, 8), np.float32), "y": np.arange(10) % 2},
            "x must hold uint8 pixels (0-255), it holds float32",
        ),
        (
            {"x": np.zeros((10, 8, 8), np.uint8), "y": np.array([0, 1, 2, 5] * 2 + [0, 1])},
            "labels must be 0..K-1 with every class present; found no image of class [3, 4]",
        ),
        (
            {"x": np.zeros((10, 8, 8), np.uint8), "y": np.arange(10) % 2 - 1},
            "labels must be 0..K-1 with every class present; found -1",
        ),
        (
            {
                "x": np.zeros((10, 8, 8), np.uint8),
                "y": np.arange(10) % 2,
                "x_test": np.zeros((2, 8, 8), np.uint8),
                "y_test": np.array([0, 7]),
            },
            "y_test holds label 7, outside the training labels 0..1",
        ),
        (
            {"x": np.zeros((10, 8, 8), np.uint8), "y": np.array([0, 1] * 4 + [0, 2**40])},
            "found label 1099511627776: more classes than the 10 images",
        ),
    ],
    ids=[
        "no y",
        "one class",
        "not uint8",
        "a class missing",
        "negative",
        "test out of range",
        "a huge label",
    ],
)
def test_bad_npz_files(tmp_path, arrays, message):
    np.savez(tmp_path / "data.npz", **arrays)
    line = _bad(tmp_path, tmp_path / "data.npz")
    assert line.startswith(f"error: {tmp_path / 'data.npz'}") and message in line, line


def test_a_huge_label_is_one_line_and_allocates_nothing_by_it(tmp_path):
    """A corrupt label (2,000,000 among ten images) is refused before anything is sized by
    it: no set or list of two million classes (the labels of a data set name at most one
    class per image)."""
    import tracemalloc

    from budgetnas.trainers.sources import SourceError, read_npz

    y = np.arange(10) % 2
    y[3] = 2_000_000
    np.savez(tmp_path / "data.npz", x=np.zeros((10, 8, 8), np.uint8), y=y)
    tracemalloc.start()
    try:
        with pytest.raises(SourceError) as err:
            read_npz(tmp_path / "data.npz")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5_000_000, peak  # a set of 2,000,001 ints is over 100 MB
    assert "found label 2000000: more classes than the 10 images" in str(err.value)


def test_torchvision_labels_outside_the_classes_are_one_line(tmp_path, monkeypatch):
    """A torchvision set whose labels go past its classes (or, without a class list, past its
    image count) is one line, before a list of classes is sized by the largest label."""
    import torchvision.datasets as tvd

    x, y = shapes_arrays(4, classes=2)

    class FakeSVHN:  # SVHN has no class list: its classes come from its labels
        def __init__(self, root, split, download):
            self.data = x.transpose(0, 3, 1, 2)
            self.labels = np.where(np.arange(len(x)) == 1, 200_000, y)

    monkeypatch.setattr(tvd, "SVHN", FakeSVHN)
    with pytest.raises(
        DataError,
        match="labels must be 0..K-1 with every class present; found "
        "label 200000: more classes than the 8 images",
    ):
        DataConfig(dataset="svhn", data_dir=str(tmp_path)).arrays()

    class FakeCIFAR10:
        classes = ["a", "b"]

        def __init__(self, root, train, download):
            self.data = x
            self.targets = [0, 1, 7, 1, 0, 1, 0, 1]

    monkeypatch.setattr(tvd, "CIFAR10", FakeCIFAR10)
    with pytest.raises(
        DataError, match="cifar10: the training part holds label 7, outside its 2 classes"
    ):
        DataConfig(dataset="cifar10", data_dir=str(tmp_path)).arrays()


def test_mnist_labels_outside_its_classes_are_one_line(tmp_path):
    """A damaged MNIST label file (a label of 200) is one line naming it, not a failure in
    the middle of training."""
    from tests.helpers import synthetic_images, write_idx

    root = write_synthetic_mnist(tmp_path, n_train=50, n_test=10)
    _, labels = synthetic_images(50, 1)
    labels[7] = 200
    write_idx(root / "MNIST" / "raw" / "train-labels-idx1-ubyte", labels)
    with pytest.raises(
        DataError, match="mnist: the training part holds label 200, outside its 10 classes"
    ):
        DataConfig(dataset="mnist", data_dir=str(root), val_size=5).load()


@pytest.mark.parametrize("damage", ["bad crc", "object array"])
def test_a_damaged_or_pickled_npz_is_one_line(tmp_path, damage):
    """An .npz is read key by key when it is used: a damaged member or an object array is one
    line naming the file and the key, and no run folder is made."""
    path = tmp_path / "data.npz"
    x, y = np.full((10, 8, 8), 7, np.uint8), np.arange(10) % 2
    if damage == "object array":
        np.savez(path, x=np.array([x[0], None], dtype=object), y=y)
        reason = "(ValueError: Object arrays cannot be loaded"
    else:
        np.savez(path, x=x, y=y)  # stored, not compressed: the pixels are there as written
        raw = bytearray(path.read_bytes())
        raw[raw.index(bytes([7] * 64)) + 10] ^= 0xFF
        path.write_bytes(bytes(raw))
        reason = "(BadZipFile: Bad CRC-32"
    line = _bad(tmp_path, path)
    assert line.startswith(f"error: {path}: cannot read x {reason}"), line


def _write_emnist(root, images, labels, part):
    raw = root / "EMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    prefix = f"emnist-balanced-{part}"
    _write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
    _write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)


def test_emnist_is_read_upright(tmp_path):
    """EMNIST's files hold every image transposed (torchvision reads them as they are): the
    images are read upright, as a user's own characters are, so the exported network takes
    upright input."""
    rng = np.random.default_rng(0)
    upright = rng.integers(0, 256, size=(30, 28, 28), dtype=np.uint8)
    upright[:, :4, :] = 255  # a bar along the top of each image: not symmetric under .T
    labels = (np.arange(30) % 47).astype(np.uint8)
    _write_emnist(tmp_path, upright[:20].transpose(0, 2, 1), labels[:20], "train")
    _write_emnist(tmp_path, upright[20:].transpose(0, 2, 1), labels[20:], "test")
    cfg = DataConfig(dataset="emnist", data_dir=str(tmp_path))
    assert cfg.info.num_classes == 47 and cfg.info.image_size == 28
    assert np.array_equal(cfg.arrays().x[:, 0], upright[:20])
    test = cfg.load_test()
    assert torch.equal(test.x[:, 0], torch.from_numpy(upright[20:]))
    assert (test.x[:, 0, :4, :] == 255).all()
    resized = DataConfig(dataset="emnist", data_dir=str(tmp_path), resize=14)
    assert resized.info.image_size == 14 and resized.load_test().x.shape == (10, 1, 14, 14)


def test_torchvision_colour_sets_are_read_as_channels_first(tmp_path, monkeypatch):
    """CIFAR-10 as torchvision holds it (N x 32 x 32 x 3 and a list of labels): read as
    3 x 32 x 32 images, its own test part, normalisation from its training part."""
    import torchvision.datasets as tvd

    x, y = shapes_arrays(12, classes=5)

    class FakeCIFAR10:
        classes = ["a", "b", "c", "d", "e"]

        def __init__(self, root, train, download):
            self.data = x if train else x[:20]
            self.targets = list(y if train else y[:20])

    monkeypatch.setattr(tvd, "CIFAR10", FakeCIFAR10)
    cfg = DataConfig(dataset="cifar10", data_dir=str(tmp_path))
    info = cfg.info
    assert (info.in_channels, info.image_size, info.num_classes) == (3, 32, 5)
    assert cfg.test_note is None and len(cfg.load_test()) == 20
    data = cfg.load()
    assert data.train.x.shape[1:] == (3, 32, 32)
    first = data.val.x[0].permute(1, 2, 0)  # back to height x width x channels
    assert any(torch.equal(first, torch.from_numpy(image)) for image in x)


def test_a_torchvision_set_not_on_disk_is_one_line(tmp_path):
    line = cli_error(
        runner.invoke(
            app,
            [
                "search",
                "--dataset",
                "cifar10",
                "--data-dir",
                str(tmp_path),
                "--budget",
                "25k",
                "--out",
                str(tmp_path / "run"),
                *QUICK,
            ],
        )
    )
    assert line.startswith(f"error: cifar10: could not read it from {tmp_path} (")
    assert not (tmp_path / "run").exists()
