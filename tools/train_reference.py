#!/usr/bin/env python
"""Train a CIFAR-10 reference checkpoint for one registered zoo model (issue 8).

Run from the repository root::

    OMP_NUM_THREADS=1 python tools/train_reference.py mobilenet_v3_small --epochs 15 --input-size 64
    OMP_NUM_THREADS=1 python tools/train_reference.py mobilenet_v3_small --epochs 15 --input-size 64 --resume
    python tools/train_reference.py mobilenet_v2 --input-size 64 --bench 20     # time 20 steps, write nothing

What it does:

* data: ``../shared/datasets/cifar10-train.tar.gz`` (``train/<class>/NNNN.jpg``) or any ImageFolder
  tree (``--data``). The images are decoded once (Pillow, RGB) into a uint8 array cached under
  ``~/.cache/mobile-export/`` (keyed by the archive's sha256, or for a folder by the sha256 of its
  file list with sizes and mtimes), so later runs start in a second.
* split: a fixed, class-balanced held-out set of ``--holdout`` (5,000) images: for each class in sorted
  order, ``np.random.default_rng(--split-seed).choice`` picks ``holdout / classes`` of the class's
  sorted file names (one generator, classes visited in order). Training never sees them. Their member
  names (class-major, file-name order, one per line) are written once to
  ``<out>/<weights-name>_holdout.txt``; later runs check they agree with that file.
* model: the registered architecture, unchanged, with ``num_classes`` = number of classes (10).
* recipe: SGD (momentum 0.9, nesterov), batch 128, lr 0.1 with a one-cycle schedule (linear warm-up
  over the first 15 % of steps from lr/10, cosine decay to 0), weight decay 5e-4 on conv/linear weights,
  4e-5 on depthwise convolutions, ``--wd-bn`` (default none) on BN, none on biases, label smoothing 0.1; augmentation random crop
  (32×32 padded by 4, zero fill) + horizontal flip, applied on the 32×32 pixels *before* the zoo's
  deterministic geometry for ``--input-size`` (``< 64``: resize to input size; ``>= 64``: shorter side
  to ``round(S/0.875)``, centre crop S), so training sees what the validator feeds, shifted/flipped.
  BatchNorm stays in the model (the exporter folds it).
* evaluation: held-out top-1 with the zoo's own preprocessing (``calibration.preprocess_image`` on the
  decoded image, exactly the validator's path), every epoch and at the end.
* resumable: model + optimizer + scheduler + epoch + RNG states are saved after every epoch in
  ``~/.cache/mobile-export/train/<model>_<weights-name>_s<size>/last.pt``; ``--resume`` continues from it.
* mixed input size: ``--low-res S:N`` trains the first N epochs at S px and the rest at ``--input-size``,
  one schedule across both; ``--bench`` with it times the S px steps. Check that it transfers before a
  long run: MobileNetV2 after 4 epochs at 32 px (2 threads: 2.4 min an epoch against 4.9 at 64 px) held
  out 58.3% at 32 px and 10.0% at 64 px (36.1% with BatchNorm statistics recomputed at 64 px).
* speed: ``--compile`` trains through ``torch.compile`` (inductor), which fuses the many small ops of
  squeeze-excitation / Ghost blocks: GhostNet 1.0 at 32 px measured 1.9 s instead of 2.9 s a step
  (``--bench``, one thread, on a loaded machine); evaluation and the saved state_dict are unchanged.
* output: ``<out>/<model>_<weights-name>.pt`` (float32 state_dict, ``torch.load(weights_only=True)``)
  and ``<out>/<model>_<weights-name>.json`` (the sidecar ``models/shipped.py`` registers). Shipped
  checkpoints are then stored in float16 by ``tools/pack_checkpoint.py`` (half the size, re-measured).
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import math
import os
import sys
import tarfile
import time
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from PIL import Image  # noqa: E402

log = logging.getLogger("train_reference")

REPO = Path(__file__).resolve().parents[1]
# ../shared beside the checkout, or $MOBILE_EXPORT_SHARED (as in tests/conftest.py)
DEFAULT_DATA = Path(os.environ.get("MOBILE_EXPORT_SHARED", REPO.parent / "shared")) / "datasets" / "cifar10-train.tar.gz"
DEFAULT_OUT = REPO / "models" / "weights"
CACHE = Path(os.environ.get("MOBILE_EXPORT_CACHE", Path.home() / ".cache" / "mobile-export"))
IMAGE_EXT = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm")

# CIFAR-10 train-set channel statistics (the commonly used figures; the JPEG archive's own are within 1e-3)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


# ----------------------------------------------------------------------------------------------- data
def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def _stack(names: list[str], labels: list[int], pixels: list[np.ndarray], classes: list[str], key: str) -> dict:
    shapes = {p.shape for p in pixels}
    if len(shapes) != 1:
        raise SystemExit(
            f"the images have {len(shapes)} different sizes (e.g. {sorted(shapes)[:3]}); this trainer caches "
            "one uint8 array and needs images of one size: resize the tree first."
        )
    return {
        "images": np.stack(pixels),
        "labels": np.asarray(labels, dtype=np.int64),
        "files": np.asarray(names),
        "classes": np.asarray(classes),
        "key": np.asarray(key),
    }


def _load_tar(path: Path, key: str) -> dict:
    by_class: dict[str, list[tuple[str, bytes]]] = {}
    with tarfile.open(path, "r:*") as tar:
        for m in tar:  # streaming, archive order
            if not (m.isfile() and m.name.lower().endswith(IMAGE_EXT)):
                continue
            parts = Path(m.name).parts
            if len(parts) < 2:
                continue
            by_class.setdefault(parts[-2], []).append((m.name, tar.extractfile(m).read()))
    classes = sorted(by_class)
    names, labels, pixels = [], [], []
    for label, cls in enumerate(classes):
        for name, data in sorted(by_class[cls]):
            names.append(name)
            labels.append(label)
            pixels.append(_decode(data))
    return _stack(names, labels, pixels, classes, key)


def _load_folder(root: Path, key: str) -> dict:
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    names, labels, pixels = [], [], []
    for label, cls in enumerate(classes):
        for p in sorted((root / cls).rglob("*")):
            if p.is_file() and p.suffix.lower() in IMAGE_EXT:
                names.append(str(p.relative_to(root)))
                labels.append(label)
                pixels.append(_decode(p.read_bytes()))
    return _stack(names, labels, pixels, classes, key)


def load_dataset(data: Path) -> dict:
    """Decoded images (N, H, W, 3) uint8, labels, member names, class names; cached on disk."""
    if data.is_dir():
        h = hashlib.sha256()
        for p in sorted(data.rglob("*")):
            if p.is_file():
                st = p.stat()
                h.update(f"{p.relative_to(data)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        key, kind = "folder-" + h.hexdigest(), "folder"
    elif data.is_file():
        key, kind = sha256_file(data), "archive"
    else:
        raise SystemExit(f"training data '{data}' does not exist; pass --data ARCHIVE_OR_IMAGEFOLDER.")
    cache = CACHE / f"dataset-{key[:24]}.npz"
    if cache.is_file():
        with np.load(cache) as z:
            ds = {k: z[k] for k in z.files}
        log.info("data: %d images %s from cache %s", len(ds["labels"]), ds["images"].shape[1:], cache)
    else:
        t0 = time.time()
        log.info("data: decoding %s once (cached afterwards at %s)", data, cache)
        ds = _load_tar(data, key) if kind == "archive" else _load_folder(data, key)
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp.npz")   # per process: two trainings may decode at once
        np.savez(tmp, **ds)
        os.replace(tmp, cache)
        log.info("data: %d images decoded in %.1fs", len(ds["labels"]), time.time() - t0)
    ds["sha256"] = key
    ds["kind"] = kind
    return ds


def holdout_split(ds: dict, holdout: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train_idx, holdout_idx): class-balanced, seeded; holdout sorted class-major, file-name order."""
    labels, files = ds["labels"], ds["files"]
    classes = len(ds["classes"])
    per_class = holdout // classes
    rng = np.random.default_rng(seed)
    picked = []
    for c in range(classes):
        idx = np.flatnonzero(labels == c)
        idx = idx[np.argsort(files[idx], kind="stable")]
        if len(idx) <= per_class:
            raise SystemExit(f"class {ds['classes'][c]} has only {len(idx)} images; lower --holdout.")
        picked.append(np.sort(idx[np.sort(rng.choice(len(idx), size=per_class, replace=False))]))
    hold = np.concatenate(picked)
    mask = np.ones(len(labels), dtype=bool)
    mask[hold] = False
    return np.flatnonzero(mask), hold


def holdout_text(files: np.ndarray) -> str:
    return "".join(f"{f}\n" for f in files)


# ----------------------------------------------------------------------------------------- transforms
def eval_inputs(images: np.ndarray, input_size: int, mean, std) -> torch.Tensor:
    """The zoo's own preprocessing (what the validator does), image by image."""
    from mobile_export.calibration import preprocess_image

    cfg = SimpleNamespace(input_size=input_size, mean=mean, std=std, spec=SimpleNamespace(in_channels=3))
    out = np.stack([preprocess_image(Image.fromarray(im), cfg) for im in images])
    return torch.from_numpy(out)


class TrainTransform:
    """Random crop (pad 4, zero fill) + flip on the stored pixels, then the zoo's geometry for the
    input size (resize to S below 64; above, resize to round(S/0.875) and centre-crop S) and
    normalization. Batched torch ops; bilinear like Pillow's (no antialias when upscaling)."""

    def __init__(self, input_size: int, mean, std, pad: int = 4):
        self.s = input_size
        self.pad = pad
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)

    def geometry(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        s = self.s
        if s < 64:
            if (h, w) != (s, s):
                x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False, antialias=s < min(h, w))
            return x
        short = int(round(s / 0.875))
        nh, nw = (int(short * h / w), short) if w <= h else (short, int(short * w / h))
        if (nh, nw) != (h, w):
            x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False, antialias=short < min(h, w))
        top, left = int(round((nh - s) / 2.0)), int(round((nw - s) / 2.0))
        return x[..., top:top + s, left:left + s]

    def __call__(self, batch: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        n, h, w, _ = batch.shape
        p = self.pad
        x = torch.from_numpy(batch).permute(0, 3, 1, 2).float().div_(255.0)
        xp = F.pad(x, (p, p, p, p))
        dy = rng.integers(0, 2 * p + 1, size=n)
        dx = rng.integers(0, 2 * p + 1, size=n)
        flip = rng.random(n) < 0.5
        out = torch.empty_like(x)
        for i in range(n):
            crop = xp[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w]
            out[i] = crop.flip(-1) if flip[i] else crop
        out = self.geometry(out).clamp_(0.0, 1.0)
        return ((out - self.mean) / self.std).contiguous()


# ------------------------------------------------------------------------------------------- training
def param_groups(model: nn.Module, wd: float, wd_dw: float, wd_bn: float = 0.0) -> list[dict]:
    decay, dw, bn, none = [], [], [], []
    for m in model.modules():
        for name, p in m.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            if isinstance(m, nn.Conv2d) and name == "weight" and m.groups > 1 and m.groups == m.in_channels:
                dw.append(p)
            elif isinstance(m, (nn.Conv2d, nn.Linear)) and name == "weight":
                decay.append(p)
            elif isinstance(m, nn.modules.batchnorm._BatchNorm):
                bn.append(p)
            else:  # biases
                none.append(p)
    return [
        {"params": decay, "weight_decay": wd},
        {"params": dw, "weight_decay": wd_dw},
        {"params": bn, "weight_decay": wd_bn},
        {"params": none, "weight_decay": 0.0},
    ]


def reinit_head(model: nn.Module, bias: float) -> str:
    """SqueezeNet's logits come out of a ReLU: with the zoo's N(0, 0.01) head and zero bias, SGD pushes
    every non-target logit below zero within a few dozen steps and they never come back (loss stuck at
    ln 10, measured). A Kaiming-uniform head with a positive bias keeps them alive. EfficientNet's
    torchvision init draws its classifier from ±1/sqrt(classes), sized for 1,000: with 10 classes the
    first logits (training mode, random 64 px inputs) have a std of 2.4-2.5 against 0.5 re-drawn at fan-in
    scale (bias 0), and B0 learnt to 12% in two epochs."""
    name, last = None, None
    for n, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            name, last = n, m
    nn.init.kaiming_uniform_(last.weight)
    nn.init.constant_(last.bias, bias)
    return name


def one_cycle(total_steps: int, warmup_frac: float = 0.15, start_div: float = 10.0):
    warm = max(1, int(total_steps * warmup_frac))

    def f(step: int) -> float:
        if step < warm:
            return 1.0 / start_div + (1.0 - 1.0 / start_div) * step / warm
        t = (step - warm) / max(1, total_steps - warm)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))

    return f


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 500) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(x), batch):
        correct += (model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum().item()
    return correct / len(x)


def init_provenance(init: Path | None) -> dict | None:
    """For a fine-tune (``--init``): the starting checkpoint's sha256 and, when its sidecar sits
    beside it, the recipe, history and figures of the run that made it (nested for a chain)."""
    if init is None:
        return None
    prior: dict = {"file": init.name, "sha256": sha256_file(init)}
    side = init.with_suffix(".json")
    if side.is_file():
        md = json.loads(side.read_text()).get("metadata", {})
        prior.update({k: md[k] for k in ("recipe", "history", "holdout_top1", "training_wall_time_s",
                                         "training_wall_time_total_s", "init_from", "seed") if k in md})
    return prior


def atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _low_res(text: str) -> tuple[int, int]:
    try:
        size, epochs = (int(v) for v in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not S:N (a size in px and a number of epochs), e.g. 32:20")
    if size < 8 or epochs < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: S must be at least 8 px and N at least 1 epoch")
    return size, epochs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="a registered zoo model, e.g. mobilenet_v3_small")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--input-size", type=int, default=64)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="a .tar(.gz) or an ImageFolder tree")
    ap.add_argument("--resume", action="store_true", help="continue from the work dir's last.pt")
    ap.add_argument("--init", type=Path, help="start from these weights (a state_dict), e.g. to fine-tune further")
    ap.add_argument("--weights-name", default="cifar10")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--wd", type=float, default=5e-4)
    ap.add_argument("--wd-dw", type=float, default=4e-5)
    ap.add_argument("--wd-bn", type=float, default=0.0,
                    help="weight decay on BN scale/shift: keeps activations (residual streams) small for int8")
    ap.add_argument("--label-smoothing", type=float, default=0.1)
    ap.add_argument("--warmup", type=float, default=0.15, help="fraction of steps of linear warm-up")
    ap.add_argument("--holdout", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=0, help="init / shuffling / augmentation seed")
    ap.add_argument("--split-seed", type=int, default=0, help="seed of the held-out split")
    ap.add_argument("--norm", choices=("cifar10", "imagenet"), default="cifar10")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--compile", action="store_true",
                    help="train through torch.compile (inductor: fuses the many small ops of SE / ghost blocks; "
                         "the first steps pay the compile); evaluation and the saved state_dict are unaffected")
    ap.add_argument("--workdir", type=Path, help="default ~/.cache/mobile-export/train/<model>_<weights>_s<size>")
    ap.add_argument("--head-bias", type=float, default=None, metavar="B",
                    help="re-initialise the last conv/linear layer (Kaiming uniform weight, bias B) so logits that "
                         "pass through a ReLU (SqueezeNet) start alive, or so a head initialised for 1,000 "
                         "classes (EfficientNet-B0) does not start 10 logits large; the architecture is unchanged")
    ap.add_argument("--low-res", type=_low_res, metavar="S:N",
                    help="mixed input size: the first N epochs at S px (about (S/size)² of the cost), the rest at "
                         "--input-size; held-out top-1 is always measured at --input-size")
    ap.add_argument("--bench", type=int, default=0, metavar="STEPS",
                    help="time STEPS training steps, print the projected epoch time, write nothing")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")

    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    from mobile_export.models import IMAGENET_MEAN, IMAGENET_STD, get_model, get_spec

    spec = get_spec(args.model)
    if args.input_size < spec.min_input_size:
        raise SystemExit(f"--input-size {args.input_size} is below {args.model}'s minimum {spec.min_input_size}.")
    mean, std = (CIFAR10_MEAN, CIFAR10_STD) if args.norm == "cifar10" else (IMAGENET_MEAN, IMAGENET_STD)

    ds = load_dataset(args.data)
    classes = [str(c) for c in ds["classes"]]
    train_idx, hold_idx = holdout_split(ds, args.holdout, args.split_seed)
    hold_text = holdout_text(ds["files"][hold_idx])
    hold_sha = hashlib.sha256(hold_text.encode()).hexdigest()
    hold_file = args.out / f"{args.weights_name}_holdout.txt"
    if hold_file.is_file() and hold_file.read_text() != hold_text and not args.bench:
        raise SystemExit(f"{hold_file} lists a different held-out split (other data or --split-seed); "
                         "remove it or use the same data and seed.")
    log.info("split: %d train / %d held out (split seed %d, list sha256 %s)",
             len(train_idx), len(hold_idx), args.split_seed, hold_sha[:16])

    torch.manual_seed(args.seed)
    model = get_model(args.model, num_classes=len(classes))
    if args.head_bias is not None and not args.init:
        head = reinit_head(model, args.head_bias)
        log.info("init: %s re-initialised (Kaiming uniform weight, bias %g)", head, args.head_bias)
    if args.init:
        from mobile_export.models import load_into, read_state_dict
        load_into(model, read_state_dict(args.init), str(args.init))
        log.info("init: weights from %s", args.init)
    mf = torch.channels_last if args.channels_last else torch.contiguous_format
    model = model.to(memory_format=mf)
    opt = torch.optim.SGD(param_groups(model, args.wd, args.wd_dw, args.wd_bn), lr=args.lr, momentum=0.9, nesterov=True)
    steps_per_epoch = len(train_idx) // args.batch  # drop the last partial batch
    total = steps_per_epoch * args.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(opt, one_cycle(total, args.warmup))
    crit = nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)
    tf = TrainTransform(args.input_size, mean, std)
    low_size, low_epochs = args.low_res or (args.input_size, 0)
    if low_epochs >= args.epochs:
        raise SystemExit(f"--low-res {low_size}:{low_epochs} leaves no epoch at --input-size {args.input_size}; "
                         f"give N below --epochs {args.epochs}.")
    tf_low = TrainTransform(low_size, mean, std)
    net = torch.compile(model) if args.compile else model  # shares model's parameters
    images, labels = ds["images"], torch.from_numpy(ds["labels"])

    if args.bench:
        rng = np.random.default_rng(args.seed)
        model.train()
        times = []
        for step in range(args.bench):
            idx = rng.choice(train_idx, size=args.batch, replace=False)
            t0 = time.perf_counter()
            x = (tf_low if args.low_res else tf)(images[idx], rng).to(memory_format=mf)
            loss = crit(net(x), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            times.append(time.perf_counter() - t0)
        per = float(np.median(times[2:] if len(times) > 4 else times))
        t0 = time.perf_counter()
        xe = eval_inputs(images[hold_idx[:500]], args.input_size, mean, std)
        tprep = (time.perf_counter() - t0) * len(hold_idx) / 500
        t0 = time.perf_counter()
        evaluate(model, xe.to(memory_format=mf), labels[hold_idx[:500]])
        tev = (time.perf_counter() - t0) * len(hold_idx) / 500
        print(f"{args.model} @ {low_size if args.low_res else args.input_size}: {per * 1000:.0f} ms/step → {per * steps_per_epoch / 60:.1f} min/epoch"
              f" + eval {tev:.0f}s (held-out preprocessing once {tprep:.0f}s)")
        return 0

    work = args.workdir or CACHE / "train" / f"{args.model}_{args.weights_name}_s{args.input_size}"
    work.mkdir(parents=True, exist_ok=True)
    ckpt_path = work / "last.pt"
    start_epoch, elapsed, history = 0, 0.0, []
    rng = np.random.default_rng(args.seed)
    run_cfg = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
               if k not in ("resume", "out", "workdir", "bench", "threads", "data") and not (k == "low_res" and v is None)}
    if args.resume:
        if not ckpt_path.is_file():
            raise SystemExit(f"--resume: no checkpoint at {ckpt_path}; start without --resume.")
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        if ck["run_cfg"] != run_cfg or ck["data_sha256"] != ds["sha256"]:
            diff = {k: (ck["run_cfg"].get(k), v) for k, v in run_cfg.items() if ck["run_cfg"].get(k) != v}
            raise SystemExit(f"--resume: the checkpoint was made with other settings {diff or 'data'}; "
                             "resume with the same options (or start afresh, or use --init WEIGHTS).")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        rng.bit_generator.state = ck["rng"]
        torch.set_rng_state(ck["torch_rng"])
        start_epoch, elapsed, history = ck["epoch"], ck["elapsed"], ck["history"]
        log.info("resume: %s at epoch %d/%d (%.1f min trained so far)", ckpt_path, start_epoch, args.epochs,
                 elapsed / 60)

    t0 = time.time()
    x_hold = eval_inputs(images[hold_idx], args.input_size, mean, std).to(memory_format=mf)
    y_hold = labels[hold_idx]
    log.info("held-out inputs preprocessed with the zoo's path in %.1fs", time.time() - t0)

    from tqdm import tqdm

    for epoch in range(start_epoch, args.epochs):
        t_ep = time.time()
        model.train()
        perm = rng.permutation(train_idx)
        run_loss, run_correct, seen = 0.0, 0, 0
        tf_epoch = tf_low if epoch < low_epochs else tf
        bar = tqdm(range(steps_per_epoch), desc=f"{args.model} epoch {epoch + 1}/{args.epochs}",
                   mininterval=30, file=sys.stderr, dynamic_ncols=False, ncols=100)
        for step in bar:
            idx = perm[step * args.batch:(step + 1) * args.batch]
            x = tf_epoch(images[idx], rng).to(memory_format=mf)
            y = labels[idx]
            out = net(x)
            loss = crit(out, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            run_loss += loss.item() * len(idx)
            run_correct += (out.argmax(1) == y).sum().item()
            seen += len(idx)
            if step % 20 == 0:
                bar.set_postfix(loss=f"{run_loss / seen:.3f}", acc=f"{run_correct / seen:.3f}",
                                lr=f"{sched.get_last_lr()[0]:.4f}")
        bar.close()
        train_time = time.time() - t_ep
        acc = evaluate(model, x_hold, y_hold)
        ep_time = time.time() - t_ep
        elapsed += ep_time
        history.append({"epoch": epoch + 1, "train_loss": round(run_loss / seen, 4),
                        "train_top1": round(run_correct / seen, 4), "holdout_top1": round(acc, 4),
                        "seconds": round(ep_time, 1), "train_seconds": round(train_time, 1)})
        log.info("epoch %d/%d: loss %.3f train %.3f held-out %.4f (%.0fs; %.1f min total)", epoch + 1,
                 args.epochs, run_loss / seen, run_correct / seen, acc, ep_time, elapsed / 60)
        atomic_save({"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                     "epoch": epoch + 1, "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
                     "elapsed": elapsed, "history": history, "run_cfg": run_cfg, "data_sha256": ds["sha256"]},
                    ckpt_path)

    # final: exact-path evaluation once more, then the shipped files
    model = model.to(memory_format=torch.contiguous_format).eval()
    acc = evaluate(model, x_hold.contiguous(), y_hold)
    state = {k: (v.detach().float().contiguous() if v.is_floating_point() else v.detach().contiguous())
             for k, v in model.state_dict().items()}
    args.out.mkdir(parents=True, exist_ok=True)
    if not hold_file.is_file():
        atomic_write(hold_file, hold_text)
        log.info("wrote %s (%d files, sha256 %s)", hold_file, len(hold_idx), hold_sha)
    stem = f"{args.model}_{args.weights_name}"
    pt = args.out / f"{stem}.pt"
    atomic_save(state, pt)
    nparams = sum(p.numel() for p in model.parameters())
    sidecar = {
        "model": args.model,
        "weights_name": args.weights_name,
        "num_classes": len(classes),
        "input_size": args.input_size,
        "mean": list(mean),
        "std": list(std),
        "labels": classes,
        "metadata": {
            "dataset": {
                "source": args.data.name,
                "sha256": ds["sha256"],
                "images": int(len(ds["labels"])),
                "train_images": int(len(train_idx)),
                "holdout_images": int(len(hold_idx)),
                "holdout_list": hold_file.name,
                "holdout_list_sha256": hold_sha,
                "holdout_split": f"classes in sorted order, one np.random.default_rng({args.split_seed}); per class "
                                 f"choice(len(files), size={args.holdout // len(classes)}, replace=False) indexes "
                                 "the class's sorted file names; listed class-major in file-name order",
                "split_seed": args.split_seed,
            },
            "holdout_top1": round(acc, 4),
            # the quick check in tests/models/test_shipped_weights.py: every 10th file of the held-out list
            "holdout_top1_every10th": round(evaluate(model, x_hold[::10].contiguous(), y_hold[::10]), 4),
            "holdout_preprocessing": "mobile_export.calibration.preprocess_image (the zoo's path for input_size)",
            "recipe": {
                "optimizer": f"SGD momentum 0.9 nesterov, weight decay {args.wd} (depthwise {args.wd_dw}, "
                             f"BN {args.wd_bn:g}, none on biases)",
                "lr_schedule": f"one-cycle per step: linear warm-up {args.lr / 10:g}→{args.lr:g} over "
                               f"{args.warmup:.0%} of steps, cosine to 0",
                "lr": args.lr,
                "epochs": args.epochs,
                "batch": args.batch,
                "steps": total,
                "label_smoothing": args.label_smoothing,
                "augmentation": "random crop 32x32 from zero-padded (4 px) image + horizontal flip, then the "
                                "zoo's geometry for input_size (torch bilinear)",
                "input_size": args.input_size,
                **({"low_res": f"the first {low_epochs} epochs at {low_size} px"} if low_epochs else {}),
                "normalization": args.norm,
                "init": f"{args.init.name} (metadata.init_from)" if args.init else "random (zoo initialisation)" + (
                    f"; last layer Kaiming uniform with bias {args.head_bias:g} (logits pass a ReLU)"
                    if args.head_bias is not None else ""),
                "threads": args.threads,
            },
            "seed": args.seed,
            "history": history,
            "training_wall_time_s": round(elapsed, 1),
            "params": nparams,
            "torch": torch.__version__,
            "numpy": np.__version__,
            "tool": "tools/train_reference.py",
        },
    }
    prior = init_provenance(args.init)
    if prior:
        sidecar["metadata"]["init_from"] = prior
        sidecar["metadata"]["training_wall_time_total_s"] = round(
            elapsed + prior.get("training_wall_time_total_s", prior.get("training_wall_time_s", 0.0)), 1)
    atomic_write(args.out / f"{stem}.json", json.dumps(sidecar, indent=2) + "\n")
    log.info("wrote %s (%.1f MB) and %s.json: held-out top-1 %.4f, %.1f min of training",
             pt, pt.stat().st_size / 1e6, stem, acc, elapsed / 60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
