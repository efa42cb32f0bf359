"""Calibration data: preprocessing numerics, sources, deterministic sampling, errors, default set."""
from __future__ import annotations

import importlib.util
import socket
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mobile_export.calibration import (
    CalibrationSet,
    default_counts,
    inputs_sha256,
    load_calibration,
    load_default_labelled,
    preprocess_image,
    resize_size,
)
from mobile_export.errors import CalibrationError, UserError
from mobile_export.models.registry import IMAGENET_MEAN, IMAGENET_STD, ModelSpec

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "calibration" / "data"
CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def _spec_config(size: int, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    spec = ModelSpec(name=f"toy{size}", family="test", builder=lambda **kw: None, input_size=size,
                     min_input_size=8, mean=tuple(mean), std=tuple(std))
    return spec.configure()


def _zoo_config():
    """mobilenet_v3_small's config from the zoo; a hand-built equivalent if the zoo fails to import."""
    try:
        from mobile_export.models import configure

        return configure("mobilenet_v3_small")
    except Exception:  # the zoo is edited concurrently; the calibration code needs only the config
        return _spec_config(224)


@pytest.fixture(scope="module")
def cfg64():
    return _spec_config(64)


@pytest.fixture(scope="module")
def cfg32():
    return _spec_config(32, mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616))


def _expected(rgb, config) -> np.ndarray:
    v = np.asarray(rgb, dtype=np.float32) / np.float32(255.0)
    return (v - np.asarray(config.mean, np.float32)) / np.asarray(config.std, np.float32)


def _save(path: Path, rgb=(10, 20, 30), size=(40, 30), mode="RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, rgb if mode == "RGB" else rgb[0]).save(path)
    return path


# --- preprocessing -----------------------------------------------------------------------------

@pytest.mark.parametrize("rgb", [(0, 0, 0), (255, 255, 255), (12, 128, 250), (200, 3, 77)])
@pytest.mark.parametrize("size", [224, 32])
def test_constant_colour_maps_exactly_to_normalized_value(rgb, size):
    config = _zoo_config() if size == 224 else _spec_config(32)
    x = preprocess_image(Image.new("RGB", (300, 200), rgb), config)
    assert x.shape == (3, size, size) and x.dtype == np.float32
    want = _expected(rgb, config)
    for c in range(3):
        assert np.all(x[c] == want[c]), (c, x[c].min(), x[c].max(), want[c])


def test_resize_shorter_side_then_centre_crop_follows_the_config(cfg64):
    assert resize_size(224) == 256 and resize_size(64) == 73
    rng = np.random.default_rng(1)
    img = Image.fromarray(rng.integers(0, 256, (200, 300, 3), dtype=np.uint8))  # w=300, h=200
    # shorter side 200 → 73, longer 300 → int(73 * 300 / 200) = 109; crop offsets round(45/2)=22, round(9/2)=4
    ref = np.asarray(img.resize((109, 73), Image.BILINEAR).crop((22, 4, 86, 68)), dtype=np.uint8)
    want = (ref.astype(np.float32) / np.float32(255) - np.float32(cfg64.mean)) / np.float32(cfg64.std)
    np.testing.assert_array_equal(preprocess_image(img, cfg64), want.transpose(2, 0, 1))


def test_small_inputs_are_resized_directly_without_crop(cfg32):
    img = Image.new("RGB", (64, 32), (0, 0, 0))
    img.paste((255, 255, 255), (0, 0, 16, 32))  # left quarter white: survives a direct resize, not a crop
    x = preprocess_image(img, cfg32)
    assert x.shape == (3, 32, 32)
    assert np.allclose(x[:, :, 0], _expected((255, 255, 255), cfg32)[:, None])
    assert np.allclose(x[:, :, -1], _expected((0, 0, 0), cfg32)[:, None])


def test_greyscale_rgba_and_16bit_images_become_rgb(cfg64, tmp_path):
    grey = preprocess_image(Image.new("L", (80, 80), 100), cfg64)
    assert grey.shape == (3, 64, 64) and np.all(grey == _expected((100, 100, 100), cfg64)[:, None, None])
    rgba = preprocess_image(Image.new("RGBA", (80, 80), (1, 2, 3, 0)), cfg64)
    assert np.all(rgba == _expected((1, 2, 3), cfg64)[:, None, None])
    Image.fromarray(np.full((70, 70), 257 * 200, dtype=np.uint16)).save(tmp_path / "deep.png")
    with Image.open(tmp_path / "deep.png") as im:  # 16-bit PNG: scaled, not clipped at 255
        deep = preprocess_image(im, cfg64)
    assert np.all(deep == _expected((200, 200, 200), cfg64)[:, None, None])


@pytest.mark.parametrize("img", [Image.new("F", (70, 70), 1000.0), Image.new("La", (70, 70))],
                         ids=["float-out-of-range", "La"])
def test_image_mode_that_cannot_become_rgb_is_refused(cfg64, img):
    with pytest.raises(CalibrationError, match=r"mode .*(8-bit RGB|RGB)"):
        preprocess_image(img, cfg64, name="image x.png")


# --- directory sources ---------------------------------------------------------------------------

def test_image_folder_is_searched_recursively_with_any_case_extension(cfg64, tmp_path):
    root = tmp_path / "imgs"
    for rel in ["a.jpg", "b.PNG", "sub/c.jpeg", "sub/deeper/d.BMP", "sub/e.webp", "f.ppm"]:
        _save(root / rel)
    (root / "notes.txt").write_text("not an image")
    _save(root / ".hidden" / "g.png")
    _save(root / ".h.png")
    s = load_calibration(root, cfg64, num=100, seed=0)
    assert (s.kind, s.count, s.source, s.labels, s.class_names) == ("image-folder", 6, str(root), None, None)
    assert s.inputs.shape == (6, 3, 64, 64) and s.inputs.dtype == np.float32 and s.inputs.flags.c_contiguous
    assert s.sha256 == inputs_sha256(s.inputs)
    assert s.describe() == {"source": str(root), "kind": "image-folder", "count": 6, "seed": 0, "sha256": s.sha256}
    assert np.array_equal(s.nhwc(), s.inputs.transpose(0, 2, 3, 1)) and "image-folder" in repr(s)


def test_imagefolder_tree_labels_follow_sorted_class_dirs(cfg64, tmp_path):
    colours = {"zebra": (250, 0, 0), "ant": (0, 250, 0), "moose": (0, 0, 250)}
    for cls, rgb in colours.items():
        for i in range(3):
            _save(tmp_path / "tree" / cls / f"{i}.png", rgb)
    _save(tmp_path / "tree" / "moose" / "nested" / "9.jpg", (0, 0, 250))
    (tmp_path / "tree" / "bee").mkdir()  # an empty class keeps its index (as in torchvision) and warns
    _save(tmp_path / "tree" / ".cache" / "x.png")  # hidden: not a class
    s = load_calibration(tmp_path / "tree", cfg64, num=50, seed=3)
    assert s.kind == "imagefolder-tree" and s.class_names == ("ant", "bee", "moose", "zebra")
    assert any("bee" in w and "without images" in w for w in s.warnings)
    assert s.count == 10 and s.labels.dtype == np.int64
    assert np.bincount(s.labels).tolist() == [3, 0, 4, 3]
    for x, label in zip(s.inputs, s.labels):  # each sample's colour matches its class
        want = _expected(colours[s.class_names[label]], cfg64)
        assert np.allclose(x.mean(axis=(1, 2)), want, atol=0.05)


def test_loose_images_beside_subdirs_mean_a_plain_folder(cfg64, tmp_path):
    _save(tmp_path / "mix" / "top.png")
    _save(tmp_path / "mix" / "cls" / "a.png")
    s = load_calibration(tmp_path / "mix", cfg64)
    assert s.kind == "image-folder" and s.count == 2 and s.labels is None


def test_same_seed_same_bytes_other_seed_other_order(cfg64, tmp_path):
    for i in range(12):
        _save(tmp_path / "d" / f"{i:02d}.png", (i * 20, 255 - i * 20, 7))
    a = load_calibration(tmp_path / "d", cfg64, num=12, seed=0)
    b = load_calibration(tmp_path / "d", cfg64, num=12, seed=0)
    c = load_calibration(tmp_path / "d", cfg64, num=12, seed=1)
    assert a.sha256 == b.sha256 and np.array_equal(a.inputs, b.inputs)
    assert a.sha256 != c.sha256 and c.seed == 1
    key = lambda s: sorted(map(bytes, s.inputs.reshape(12, -1)))  # noqa: E731
    assert key(a) == key(c)  # same images, different order
    sub = load_calibration(tmp_path / "d", cfg64, num=5, seed=0)
    assert np.array_equal(sub.inputs, a.inputs[:5])  # the first num of the same permutation


def test_fewer_images_than_asked_uses_all_and_warns(cfg64, tmp_path, caplog):
    for i in range(3):
        _save(tmp_path / "few" / f"{i}.jpg")
    with caplog.at_level("WARNING"):
        s = load_calibration(tmp_path / "few", cfg64, num=256, seed=5)
    assert s.count == 3 and s.seed == 5
    assert any("asked for 256" in w and "only 3" in w for w in s.warnings)
    assert "only 3" in caplog.text


# --- array sources -------------------------------------------------------------------------------

def test_npy_nchw_float_is_used_as_is(cfg64, tmp_path):
    x = np.random.default_rng(0).standard_normal((10, 3, 64, 64)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    s = load_calibration(tmp_path / "x.npy", cfg64, num=10, seed=2)
    order = np.random.default_rng(2).permutation(10)
    assert s.kind == "npy" and s.labels is None
    np.testing.assert_array_equal(s.inputs, x[order])
    np.save(tmp_path / "x64.npy", x.astype(np.float64))
    assert load_calibration(tmp_path / "x64.npy", cfg64, num=10, seed=2).sha256 == s.sha256


def test_npy_nhwc_is_transposed(cfg64, tmp_path):
    x = np.random.default_rng(0).standard_normal((4, 3, 64, 64)).astype(np.float32)
    np.save(tmp_path / "nhwc.npy", x.transpose(0, 2, 3, 1))
    np.save(tmp_path / "nchw.npy", x)
    a = load_calibration(tmp_path / "nhwc.npy", cfg64, num=4)
    assert np.array_equal(a.inputs, load_calibration(tmp_path / "nchw.npy", cfg64, num=4).inputs)


def test_npy_uint8_pixels_are_scaled_and_normalized(cfg64, tmp_path):
    px = np.zeros((2, 64, 64, 3), dtype=np.uint8)
    px[..., 0], px[..., 1], px[..., 2] = 255, 128, 3
    np.save(tmp_path / "px.npy", px)
    s = load_calibration(tmp_path / "px.npy", cfg64, num=2)
    want = _expected((255, 128, 3), cfg64)
    assert all(np.all(s.inputs[:, c] == want[c]) for c in range(3))


def test_npz_with_labels_and_class_names(cfg64, tmp_path):
    x = np.random.default_rng(0).standard_normal((6, 64, 64, 3)).astype(np.float32)
    y = np.array([0, 1, 2, 0, 1, 2])
    np.savez(tmp_path / "d.npz", inputs=x, labels=y, class_names=np.array(["a", "b", "c"]))
    s = load_calibration(tmp_path / "d.npz", cfg64, num=4, seed=9)
    idx = np.random.default_rng(9).permutation(6)[:4]
    assert s.kind == "npz" and s.count == 4 and s.class_names == ("a", "b", "c")
    np.testing.assert_array_equal(s.labels, y[idx])
    np.testing.assert_array_equal(s.inputs, x[idx].transpose(0, 3, 1, 2))


def test_npz_without_inputs_key_takes_the_first_array(cfg64, tmp_path):
    x = np.random.default_rng(0).standard_normal((3, 3, 64, 64)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x, labels=np.array([1, 0, 1]))
    s = load_calibration(tmp_path / "d.npz", cfg64, num=3, seed=0)
    assert s.count == 3 and s.labels is not None and s.class_names is None


def test_float_pixels_warn_that_they_look_unnormalized(cfg64, tmp_path):
    np.save(tmp_path / "raw.npy", np.full((2, 3, 64, 64), 200.0, dtype=np.float32))
    s = load_calibration(tmp_path / "raw.npy", cfg64, num=2)
    assert any("unnormalized" in w for w in s.warnings)


# --- split ---------------------------------------------------------------------------------------

def test_split_is_deterministic_and_keeps_labels(cfg64, tmp_path):
    x = np.random.default_rng(0).standard_normal((10, 3, 64, 64)).astype(np.float32)
    np.savez(tmp_path / "d.npz", inputs=x, labels=np.arange(10))
    s = load_calibration(tmp_path / "d.npz", cfg64, num=10)
    fit, held = s.split(3)
    assert (fit.count, held.count) == (7, 3) and isinstance(fit, CalibrationSet)
    assert np.array_equal(np.concatenate([fit.inputs, held.inputs]), s.inputs)
    assert np.array_equal(np.concatenate([fit.labels, held.labels]), s.labels)
    assert fit.sha256 == inputs_sha256(fit.inputs) and held.sha256 != s.sha256
    again = s.split(3)
    assert again[0].sha256 == fit.sha256 and again[1].sha256 == held.sha256
    assert s.split(0)[1].count == 0
    for bad in (-1, 10, 11, 1.5):
        with pytest.raises(CalibrationError, match="hold"):
            s.split(bad)


# --- errors --------------------------------------------------------------------------------------

def _err(source, config, match, **kw):
    with pytest.raises(CalibrationError, match=match) as ei:
        load_calibration(source, config, **kw)
    assert isinstance(ei.value, UserError) and ei.value.exit_code == 2
    msg = str(ei.value)
    assert msg.count("\n") == 0 and msg.endswith(".")  # one sentence
    return msg


def test_missing_path(cfg64, tmp_path):
    _err(tmp_path / "nope", cfg64, r"nope does not exist; pass an existing")


def test_directory_without_images(cfg64, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("x")
    _err(tmp_path / "empty", cfg64, r"contains no images \(\.jpg")


def test_corrupt_and_truncated_images_name_the_file(cfg64, tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "broken.jpg").write_bytes(b"this is not a jpeg")
    _err(tmp_path / "bad", cfg64, r"cannot read image .*broken\.jpg")
    _save(tmp_path / "trunc" / "cut.png", size=(64, 64))
    data = (tmp_path / "trunc" / "cut.png").read_bytes()
    (tmp_path / "trunc" / "cut.png").write_bytes(data[: len(data) // 2])
    _err(tmp_path / "trunc", cfg64, r"cannot read image .*cut\.png")


def test_wrong_rank_and_shape_name_expected_and_got(cfg64, tmp_path):
    np.save(tmp_path / "r3.npy", np.zeros((3, 64, 64), np.float32))
    _err(tmp_path / "r3.npy", cfg64, r"shape \(3, 64, 64\) \(rank 3\) but the model needs \(N, 3, 64, 64\)")
    np.save(tmp_path / "s.npy", np.zeros((2, 3, 100, 100), np.float32))
    _err(tmp_path / "s.npy", cfg64, r"shape \(2, 3, 100, 100\) but the model needs \(N, 3, 64, 64\) NCHW "
                                    r"or \(N, 64, 64, 3\) NHWC")
    np.save(tmp_path / "zero.npy", np.zeros((0, 3, 64, 64), np.float32))
    _err(tmp_path / "zero.npy", cfg64, r"holds no samples")


@pytest.mark.parametrize("arr, match", [
    (np.array([None, 1], dtype=object), r"dtype object, which is not numeric"),
    (np.zeros((1, 3, 64, 64), dtype=np.int32), r"dtype int32; integer arrays must be uint8"),
    (np.zeros((1, 3, 64, 64), dtype=bool), r"dtype bool, which is not numeric"),
    (np.array(["a", "b"]), r"dtype <U1, which is not numeric"),
], ids=["object", "int32", "bool", "str"])
def test_non_numeric_or_wrong_dtype(cfg64, tmp_path, arr, match):
    np.save(tmp_path / "a.npy", arr, allow_pickle=True)
    _err(tmp_path / "a.npy", cfg64, match)
    np.savez(tmp_path / "a.npz", inputs=arr)
    _err(tmp_path / "a.npz", cfg64, match)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_is_refused(cfg64, tmp_path, bad):
    x = np.zeros((100, 3, 64, 64), np.float32)
    x[70, 1, 2, 3] = bad
    np.save(tmp_path / "n.npy", x)
    _err(tmp_path / "n.npy", cfg64, r"1 NaN/inf value\(s\) \(first in sample 70\)")


def test_labels_that_do_not_match(cfg64, tmp_path):
    x = np.zeros((4, 3, 64, 64), np.float32)
    np.savez(tmp_path / "len.npz", inputs=x, labels=np.array([0, 1, 2]))
    _err(tmp_path / "len.npz", cfg64, r"has 3 labels for 4 inputs")
    np.savez(tmp_path / "onehot.npz", inputs=x, labels=np.eye(4))
    _err(tmp_path / "onehot.npz", cfg64, r"1-D integer array of class indices")
    np.savez(tmp_path / "names.npz", inputs=x, labels=np.array([0, 1, 2, 5]), class_names=np.array(["a", "b"]))
    _err(tmp_path / "names.npz", cfg64, r"label 5 but only 2 class_names")


def test_unsupported_files_and_options(cfg64, tmp_path):
    (tmp_path / "data.csv").write_text("1,2,3")
    _err(tmp_path / "data.csv", cfg64, r"neither a directory of images nor a \.npy/\.npz file")
    _save(tmp_path / "one.png")
    _err(tmp_path / "one.png", cfg64, r"neither a directory")
    (tmp_path / "junk.npy").write_bytes(b"garbage")
    _err(tmp_path / "junk.npy", cfg64, r"cannot read .*junk\.npy as a \.npy array")
    (tmp_path / "junk.npz").write_bytes(b"garbage")
    _err(tmp_path / "junk.npz", cfg64, r"cannot read .*junk\.npz as a \.npz archive")
    for num in (0, -3, 2.5, True):
        _err(None, cfg64, r"positive integer", num=num)
    _err(None, cfg64, r"seed must be a non-negative integer", seed=-1)


# --- the embedded default set --------------------------------------------------------------------

@pytest.fixture
def no_network(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("the calibration package must not touch the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_default_set_loads_offline_for_mobilenet_v3_small(no_network):
    config = _zoo_config()
    s = load_calibration(None, config, num=256, seed=0)
    assert (s.kind, s.source, s.count, s.labels, s.class_names) == ("default", "default", 256, None, None)
    assert s.inputs.shape == (256, 3, 224, 224) and s.inputs.dtype == np.float32
    assert np.isfinite(s.inputs).all()
    assert any("embedded default set (256 generic images)" in w and "--calibration DIR" in w for w in s.warnings)
    mean = s.inputs.mean(axis=(0, 2, 3))
    assert np.all(np.abs(mean) < 0.5)  # natural images land near zero after ImageNet normalization
    assert load_calibration(None, config, num=256, seed=0).sha256 == s.sha256
    assert load_calibration(None, config, num=256, seed=1).sha256 != s.sha256


def test_default_set_counts_and_fewer_warning(cfg32):
    n_photos, n_cifar = default_counts()
    assert (n_photos, n_cifar) == (10, 300)
    s = load_calibration(None, cfg32, num=1000)
    assert s.count == 310 and s.inputs.shape == (310, 3, 32, 32)
    assert any("only 310" in w for w in s.warnings)
    assert load_calibration(None, cfg32, num=3).count == 3


def test_default_labelled_is_the_cifar_part(cfg32):
    s = load_default_labelled(cfg32)
    assert s.count == 300 and s.class_names == CIFAR_CLASSES
    assert s.labels.dtype == np.int64 and np.bincount(s.labels).tolist() == [30] * 10
    raw = np.load(DATA / "default.npz")["images"]
    want = (raw[5].astype(np.float32) / np.float32(255) - np.float32(cfg32.mean)) / np.float32(cfg32.std)
    np.testing.assert_array_equal(s.inputs[5], want.transpose(2, 0, 1))  # 32→32: no resampling
    sub = load_default_labelled(cfg32, num=20, seed=4)
    assert sub.count == 20 and sub.labels.shape == (20,)


def test_package_data_is_small_and_documented():
    sizes = {p.name: p.stat().st_size for p in DATA.glob("*.npz")}
    assert set(sizes) == {"default.npz", "photos.npz", "cifar10_holdout.npz"}
    assert sizes["default.npz"] + sizes["photos.npz"] < 3_000_000 and sizes["cifar10_holdout.npz"] < 3_000_000
    with np.load(DATA / "photos.npz") as z:
        names = z["names"].tolist()
        assert len(names) == 10 and len(z["licenses"]) == 10
        assert all(("CC0" in lic or "public domain" in lic) for lic in z["licenses"].tolist())
        for i in range(len(names)):
            img = z[f"photo_{i:02d}"]
            assert img.dtype == np.uint8 and min(img.shape[:2]) == 256
    with np.load(DATA / "default.npz") as z:
        assert z["images"].shape == (300, 32, 32, 3) and z["images"].dtype == np.uint8
        assert z["labels"].dtype == np.int64 and tuple(z["class_names"].tolist()) == CIFAR_CLASSES
    with np.load(DATA / "cifar10_holdout.npz") as z:
        assert z["images"].shape == (1000, 32, 32, 3) and np.bincount(z["labels"]).tolist() == [100] * 10
        assert tuple(z["class_names"].tolist()) == CIFAR_CLASSES


def test_cifar10_holdout_images_are_from_the_held_out_split():
    """The shipped evaluation images must be ones the CIFAR-10 checkpoints never trained on."""
    from pathlib import Path

    holdout = set((Path(__file__).resolve().parents[2] / "models" / "weights" / "cifar10_holdout.txt")
                  .read_text().split())
    with np.load(DATA / "cifar10_holdout.npz") as z:
        files = z["files"].tolist()
    assert len(set(files)) == 1000 and set(files) <= holdout


def test_load_cifar10_holdout_is_labelled_and_preprocessed():
    from mobile_export.calibration import load_cifar10_holdout
    from mobile_export.models import configure

    s = load_cifar10_holdout(configure("mobilenet_v3_small", weights="cifar10"), num=20, seed=1)
    assert s.inputs.shape == (20, 3, 64, 64) and s.labels.shape == (20,) and s.kind == "cifar10-holdout"
    assert len(s.class_names) == 10


def test_default_npz_is_reproducible_from_the_cifar_archive(cifar10_tar):
    spec = importlib.util.spec_from_file_location("make_default_calibration",
                                                  REPO / "tools" / "make_default_calibration.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    built = tool.build_cifar(cifar10_tar)
    with np.load(DATA / "default.npz") as z:
        for key in ("images", "labels", "class_names", "files"):
            np.testing.assert_array_equal(built[key], z[key])
    assert all(f.startswith(f"train/{CIFAR_CLASSES[y]}/") for f, y in zip(built["files"], built["labels"]))
