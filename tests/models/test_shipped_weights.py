"""The CIFAR-10 reference checkpoints shipped in ``models/weights/`` (trained by
``tools/train_reference.py``): each loads strictly through the registry, its sidecar is complete, and
its recorded held-out top-1 reproduces on 500 held-out images fed through the zoo's own preprocessing."""
from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mobile_export.calibration import preprocess_image
from mobile_export.models import configure, get_model, get_spec

WEIGHTS_DIR = Path(__file__).resolve().parents[2] / "models" / "weights"
SIDECARS = sorted(p for p in WEIGHTS_DIR.glob("*.json") if p.with_suffix(".pt").is_file()) if WEIGHTS_DIR.is_dir() else []
HOLDOUT_LIST = WEIGHTS_DIR / "cifar10_holdout.txt"
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
SAMPLE = 500  # held-out images checked per model (50 per class, every 10th of the list)
TOLERANCE_PP = 2.0
# 40 MB held the eight checkpoints of issue 18 (25.7 MB); raised deliberately for issue 16's GhostNet
# (7.9 MB) and EfficientNet-B0 (8.1 MB) in float16: 41.7 MB in all.
MAX_TOTAL_MB = 45.0

pytestmark = pytest.mark.skipif(not SIDECARS, reason="no checkpoints shipped in models/weights/")


def _meta(path: Path) -> dict:
    return json.loads(path.read_text())


def _id(path: Path) -> str:
    return path.stem


def test_shipped_checkpoints_stay_small():
    total = sum(p.with_suffix(".pt").stat().st_size for p in SIDECARS) / 1e6
    assert total <= MAX_TOTAL_MB, f"shipped checkpoints total {total:.1f} MB > {MAX_TOTAL_MB} MB"


@pytest.mark.parametrize("sidecar", SIDECARS, ids=_id)
def test_sidecar_is_complete(sidecar):
    meta = _meta(sidecar)
    for key in ("model", "weights_name", "num_classes", "input_size", "mean", "std", "labels", "metadata"):
        assert key in meta, f"{sidecar.name} lacks {key!r}"
    assert sidecar.stem == f"{meta['model']}_{meta['weights_name']}"
    get_spec(meta["model"])  # a registered model
    assert meta["num_classes"] == len(meta["labels"]) == 10
    if meta["weights_name"] == "cifar10":
        assert meta["labels"] == CIFAR10_CLASSES
    assert len(meta["mean"]) == len(meta["std"]) == 3 and all(s > 0 for s in meta["std"])
    md = meta["metadata"]
    for key in ("recipe", "seed", "holdout_top1", "holdout_top1_every10th", "training_wall_time_s", "torch", "dataset"):
        assert key in md, f"{sidecar.name} metadata lacks {key!r}"
    for key in ("optimizer", "lr_schedule", "epochs", "batch", "augmentation", "input_size"):
        assert key in md["recipe"], f"{sidecar.name} recipe lacks {key!r}"
    assert md["recipe"]["input_size"] == meta["input_size"]
    assert 0.5 <= md["holdout_top1"] <= 1.0, f"{sidecar.name}: held-out top-1 {md['holdout_top1']} is not a trained model"
    ds = md["dataset"]
    assert "split_seed" in ds and "holdout_list_sha256" in ds
    listed = WEIGHTS_DIR / ds["holdout_list"]
    assert listed.is_file(), f"{sidecar.name} names the held-out list {listed.name}, which is not shipped"
    assert hashlib.sha256(listed.read_bytes()).hexdigest() == ds["holdout_list_sha256"], (
        f"{listed.name} is not the held-out split {sidecar.name} was evaluated on"
    )


@pytest.mark.parametrize("sidecar", SIDECARS, ids=_id)
def test_checkpoint_loads_strictly_through_the_registry(sidecar):
    meta = _meta(sidecar)
    sd = torch.load(sidecar.with_suffix(".pt"), map_location="cpu", weights_only=True)
    # stored as float16 (tools/pack_checkpoint.py) to keep the repository small; loaded as float32
    assert all(v.dtype == torch.float16 for v in sd.values() if v.is_floating_point())
    assert "float16" in meta["metadata"]["storage"]
    cfg = configure(meta["model"], weights=meta["weights_name"])
    assert cfg.weights_spec is not None and Path(cfg.weights_spec.path) == sidecar.with_suffix(".pt")
    assert (cfg.num_classes, cfg.input_size) == (meta["num_classes"], meta["input_size"])
    assert tuple(cfg.mean) == tuple(meta["mean"]) and tuple(cfg.std) == tuple(meta["std"])
    assert list(cfg.labels) == meta["labels"]
    model = get_model(meta["model"], weights=meta["weights_name"])  # strict load inside
    assert not model.training
    for k, v in model.state_dict().items():
        assert v.dtype == (torch.float32 if sd[k].is_floating_point() else sd[k].dtype), k
        assert torch.equal(v, sd[k].to(v.dtype)), k
    with torch.no_grad():
        out = model(torch.zeros(1, 3, meta["input_size"], meta["input_size"]))
    assert out.shape == (1, meta["num_classes"]) and torch.isfinite(out).all()


@pytest.fixture(scope="module")
def holdout_sample(cifar10_tar):
    """Every 10th file of the shipped held-out list (500 images, 50 per class), decoded from the archive."""
    assert HOLDOUT_LIST.is_file(), f"{HOLDOUT_LIST} is missing"
    names = HOLDOUT_LIST.read_text().split()
    assert len(names) == 5000 and len(set(names)) == 5000
    wanted = set(names[::len(names) // SAMPLE])
    images: dict[str, Image.Image] = {}
    with tarfile.open(cifar10_tar, "r:gz") as tar:
        for m in tar:
            if m.name in wanted:
                with Image.open(io.BytesIO(tar.extractfile(m).read())) as im:
                    im.load()
                    images[m.name] = im.copy()
    assert len(images) == len(wanted), "some held-out files are not in the archive"
    order = sorted(images)
    labels = np.array([CIFAR10_CLASSES.index(Path(n).parts[-2]) for n in order])
    return [images[n] for n in order], labels


@pytest.mark.parametrize("sidecar", SIDECARS, ids=_id)
def test_recorded_holdout_accuracy_reproduces(sidecar, holdout_sample):
    meta = _meta(sidecar)
    images, labels = holdout_sample
    cfg = configure(meta["model"], weights=meta["weights_name"])
    x = torch.from_numpy(np.stack([preprocess_image(im, cfg) for im in images]))
    model = get_model(meta["model"], weights=meta["weights_name"])
    with torch.no_grad():
        pred = torch.cat([model(x[i:i + 250]).argmax(1) for i in range(0, len(x), 250)]).numpy()
    top1 = float((pred == labels).mean())
    # the figure recorded for these same 500 images (the full 5,000-image figure differs from any
    # 500-image subset by ~2 pp of sampling noise alone, so it is not what the check compares with)
    recorded = meta["metadata"]["holdout_top1_every10th"]
    assert abs(top1 - recorded) * 100 <= TOLERANCE_PP, (
        f"{meta['model']}: held-out top-1 on {len(labels)} images {top1:.4f}, recorded {recorded:.4f} for them"
    )
