#!/usr/bin/env python
"""Train a CIFAR-10 reference checkpoint for one registered zoo model (issue 8).

Run from the repository root::

    OMP_NUM_THREADS=1 python tools/train_reference.py mobilenet_v3_small --epochs 15 --input-size 64
    OMP_NUM_THREADS=1 python tools/train_reference.py mobilenet_v3_small --epochs 15 --input-size 64 --resume
    python tools/train_reference.py mobilenet_v2 --input-size 64 --bench 20     # time 20 steps, write nothing

What it does:

* data (``tools/cifar_data.py``, shared with pack_checkpoint and accuracy_table):
  ``../shared/datasets/cifar10-train.tar.gz`` (``train/<class>/NNNN.jpg``) or any ImageFolder
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
import json
import logging
import math
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cifar_data  # noqa: E402  (the archive, the held-out split, atomic writes)
from cifar_data import CIFAR10_MEAN, CIFAR10_STD, DEFAULT_DATA, REPO, evaluate  # noqa: E402

log = logging.getLogger("train_reference")

DEFAULT_OUT = REPO / "models" / "weights"


# ----------------------------------------------------------------------------------------- transforms
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


def init_provenance(init: Path | None) -> dict | None:
    """For a fine-tune (``--init``): the starting checkpoint's sha256 and, when its sidecar sits
    beside it, the recipe, history and figures of the run that made it (nested for a chain)."""
    if init is None:
        return None
    prior: dict = {"file": init.name, "sha256": cifar_data.sha256_file(init)}
    side = init.with_suffix(".json")
    if side.is_file():
        md = json.loads(side.read_text()).get("metadata", {})
        prior.update({k: md[k] for k in ("recipe", "history", "holdout_top1", "training_wall_time_s",
                                         "training_wall_time_total_s", "init_from", "seed") if k in md})
    return prior


def _low_res(text: str) -> tuple[int, int]:
    try:
        size, epochs = (int(v) for v in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not S:N (a size in px and a number of epochs), e.g. 32:20")
    if size < 8 or epochs < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: S must be at least 8 px and N at least 1 epoch")
    return size, epochs


def _parser() -> argparse.ArgumentParser:
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
    return ap


def _split(args, ds: dict) -> SimpleNamespace:
    """The held-out split, checked against the list a previous run wrote beside the checkpoints."""
    train_idx, hold_idx = cifar_data.holdout_split(ds, args.holdout, args.split_seed)
    text = cifar_data.holdout_text(ds["files"][hold_idx])
    sha = hashlib.sha256(text.encode()).hexdigest()
    file = args.out / f"{args.weights_name}_holdout.txt"
    if file.is_file() and file.read_text() != text and not args.bench:
        raise SystemExit(f"{file} lists a different held-out split (other data or --split-seed); "
                         "remove it or use the same data and seed.")
    log.info("split: %d train / %d held out (split seed %d, list sha256 %s)",
             len(train_idx), len(hold_idx), args.split_seed, sha[:16])
    return SimpleNamespace(train=train_idx, hold=hold_idx, text=text, sha=sha, file=file)


def _model(args, num_classes: int) -> nn.Module:
    from mobile_export.models import get_model, load_into, read_state_dict

    torch.manual_seed(args.seed)
    model = get_model(args.model, num_classes=num_classes)
    if args.head_bias is not None and not args.init:
        head = reinit_head(model, args.head_bias)
        log.info("init: %s re-initialised (Kaiming uniform weight, bias %g)", head, args.head_bias)
    if args.init:
        load_into(model, read_state_dict(args.init), str(args.init))
        log.info("init: weights from %s", args.init)
    return model


def _setup(args) -> SimpleNamespace:
    """Everything a run (or a --bench) needs: data, split, model, optimizer, schedule, transforms."""
    from mobile_export.models import IMAGENET_MEAN, IMAGENET_STD, get_spec

    spec = get_spec(args.model)
    if args.input_size < spec.min_input_size:
        raise SystemExit(f"--input-size {args.input_size} is below {args.model}'s minimum {spec.min_input_size}.")
    mean, std = (CIFAR10_MEAN, CIFAR10_STD) if args.norm == "cifar10" else (IMAGENET_MEAN, IMAGENET_STD)
    ds = cifar_data.load_dataset(args.data)
    split = _split(args, ds)
    model = _model(args, len(ds["classes"]))
    mf = torch.channels_last if args.channels_last else torch.contiguous_format
    model = model.to(memory_format=mf)
    opt = torch.optim.SGD(param_groups(model, args.wd, args.wd_dw, args.wd_bn), lr=args.lr, momentum=0.9, nesterov=True)
    steps_per_epoch = len(split.train) // args.batch  # drop the last partial batch
    total = steps_per_epoch * args.epochs
    low_size, low_epochs = args.low_res or (args.input_size, 0)
    if low_epochs >= args.epochs:
        raise SystemExit(f"--low-res {low_size}:{low_epochs} leaves no epoch at --input-size {args.input_size}; "
                         f"give N below --epochs {args.epochs}.")
    return SimpleNamespace(
        args=args, ds=ds, split=split, classes=[str(c) for c in ds["classes"]], mean=mean, std=std, mf=mf,
        model=model, net=torch.compile(model) if args.compile else model,  # net shares model's parameters
        opt=opt, sched=torch.optim.lr_scheduler.LambdaLR(opt, one_cycle(total, args.warmup)),
        crit=nn.CrossEntropyLoss(label_smoothing=args.label_smoothing),
        tf=TrainTransform(args.input_size, mean, std), tf_low=TrainTransform(low_size, mean, std),
        low_size=low_size, low_epochs=low_epochs, steps_per_epoch=steps_per_epoch, total_steps=total,
        images=ds["images"], labels=torch.from_numpy(ds["labels"]),
    )


def _step(r: SimpleNamespace, tf, idx: np.ndarray, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One SGD step on the images ``idx``: (loss, logits)."""
    x = tf(r.images[idx], rng).to(memory_format=r.mf)
    out = r.net(x)
    loss = r.crit(out, r.labels[idx])
    r.opt.zero_grad(set_to_none=True)
    loss.backward()
    r.opt.step()
    return loss, out


def _bench(r: SimpleNamespace) -> int:
    args = r.args
    rng = np.random.default_rng(args.seed)
    r.model.train()
    tf = r.tf_low if args.low_res else r.tf
    times = []
    for _ in range(args.bench):
        idx = rng.choice(r.split.train, size=args.batch, replace=False)
        t0 = time.perf_counter()
        _step(r, tf, idx, rng)
        times.append(time.perf_counter() - t0)
    per = float(np.median(times[2:] if len(times) > 4 else times))
    hold = r.split.hold
    t0 = time.perf_counter()
    xe = cifar_data.eval_inputs(r.images[hold[:500]], args.input_size, r.mean, r.std)
    tprep = (time.perf_counter() - t0) * len(hold) / 500
    t0 = time.perf_counter()
    evaluate(r.model, xe.to(memory_format=r.mf), r.labels[hold[:500]])
    tev = (time.perf_counter() - t0) * len(hold) / 500
    size = r.low_size if args.low_res else args.input_size
    print(f"{args.model} @ {size}: {per * 1000:.0f} ms/step → {per * r.steps_per_epoch / 60:.1f} min/epoch"
          f" + eval {tev:.0f}s (held-out preprocessing once {tprep:.0f}s)")
    return 0


def _run_cfg(args) -> dict:
    """The options a --resume must share with the run it continues."""
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
            if k not in ("resume", "out", "workdir", "bench", "threads", "data") and not (k == "low_res" and v is None)}


def _resume(r: SimpleNamespace, ckpt_path: Path, rng: np.random.Generator) -> tuple[int, float, list]:
    """Load the work dir's last.pt into the run: (next epoch, seconds trained, history)."""
    if not ckpt_path.is_file():
        raise SystemExit(f"--resume: no checkpoint at {ckpt_path}; start without --resume.")
    ck = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    run_cfg = _run_cfg(r.args)
    if ck["run_cfg"] != run_cfg or ck["data_sha256"] != r.ds["sha256"]:
        diff = {k: (ck["run_cfg"].get(k), v) for k, v in run_cfg.items() if ck["run_cfg"].get(k) != v}
        raise SystemExit(f"--resume: the checkpoint was made with other settings {diff or 'data'}; "
                         "resume with the same options (or start afresh, or use --init WEIGHTS).")
    r.model.load_state_dict(ck["model"])
    r.opt.load_state_dict(ck["optimizer"])
    r.sched.load_state_dict(ck["scheduler"])
    rng.bit_generator.state = ck["rng"]
    torch.set_rng_state(ck["torch_rng"])
    log.info("resume: %s at epoch %d/%d (%.1f min trained so far)", ckpt_path, ck["epoch"], r.args.epochs,
             ck["elapsed"] / 60)
    return ck["epoch"], ck["elapsed"], ck["history"]


def _train_epoch(r: SimpleNamespace, epoch: int, rng: np.random.Generator) -> tuple[float, float]:
    """One epoch over the training split in a fresh permutation: (mean loss, train top-1)."""
    from tqdm import tqdm

    r.model.train()
    perm = rng.permutation(r.split.train)
    run_loss, run_correct, seen = 0.0, 0, 0
    tf = r.tf_low if epoch < r.low_epochs else r.tf
    batch = r.args.batch
    bar = tqdm(range(r.steps_per_epoch), desc=f"{r.args.model} epoch {epoch + 1}/{r.args.epochs}",
               mininterval=30, file=sys.stderr, dynamic_ncols=False, ncols=100)
    for step in bar:
        idx = perm[step * batch:(step + 1) * batch]
        loss, out = _step(r, tf, idx, rng)
        r.sched.step()
        run_loss += loss.item() * len(idx)
        run_correct += (out.argmax(1) == r.labels[idx]).sum().item()
        seen += len(idx)
        if step % 20 == 0:
            bar.set_postfix(loss=f"{run_loss / seen:.3f}", acc=f"{run_correct / seen:.3f}",
                            lr=f"{r.sched.get_last_lr()[0]:.4f}")
    bar.close()
    return run_loss / seen, run_correct / seen


def _train(r: SimpleNamespace) -> tuple[float, list, torch.Tensor, torch.Tensor]:
    """Train (or resume) to the last epoch, checkpointing after each: (seconds, history, held-out x, y)."""
    args = r.args
    work = args.workdir or cifar_data.CACHE / "train" / f"{args.model}_{args.weights_name}_s{args.input_size}"
    work.mkdir(parents=True, exist_ok=True)
    ckpt_path = work / "last.pt"
    rng = np.random.default_rng(args.seed)
    start_epoch, elapsed, history = _resume(r, ckpt_path, rng) if args.resume else (0, 0.0, [])
    t0 = time.time()
    x_hold = cifar_data.eval_inputs(r.images[r.split.hold], args.input_size, r.mean, r.std)
    x_hold = x_hold.to(memory_format=r.mf)
    y_hold = r.labels[r.split.hold]
    log.info("held-out inputs preprocessed with the zoo's path in %.1fs", time.time() - t0)
    for epoch in range(start_epoch, args.epochs):
        t_ep = time.time()
        loss, top1 = _train_epoch(r, epoch, rng)
        train_time = time.time() - t_ep
        acc = evaluate(r.model, x_hold, y_hold)
        ep_time = time.time() - t_ep
        elapsed += ep_time
        history.append({"epoch": epoch + 1, "train_loss": round(loss, 4), "train_top1": round(top1, 4),
                        "holdout_top1": round(acc, 4), "seconds": round(ep_time, 1),
                        "train_seconds": round(train_time, 1)})
        log.info("epoch %d/%d: loss %.3f train %.3f held-out %.4f (%.0fs; %.1f min total)", epoch + 1,
                 args.epochs, loss, top1, acc, ep_time, elapsed / 60)
        cifar_data.atomic_save({"model": r.model.state_dict(), "optimizer": r.opt.state_dict(),
                          "scheduler": r.sched.state_dict(), "epoch": epoch + 1, "rng": rng.bit_generator.state,
                          "torch_rng": torch.get_rng_state(), "elapsed": elapsed, "history": history,
                          "run_cfg": _run_cfg(args), "data_sha256": r.ds["sha256"]}, ckpt_path)
    return elapsed, history, x_hold, y_hold


def _recipe(r: SimpleNamespace) -> dict:
    args = r.args
    return {
        "optimizer": f"SGD momentum 0.9 nesterov, weight decay {args.wd} (depthwise {args.wd_dw}, "
                     f"BN {args.wd_bn:g}, none on biases)",
        "lr_schedule": f"one-cycle per step: linear warm-up {args.lr / 10:g}→{args.lr:g} over "
                       f"{args.warmup:.0%} of steps, cosine to 0",
        "lr": args.lr,
        "epochs": args.epochs,
        "batch": args.batch,
        "steps": r.total_steps,
        "label_smoothing": args.label_smoothing,
        "augmentation": "random crop 32x32 from zero-padded (4 px) image + horizontal flip, then the "
                        "zoo's geometry for input_size (torch bilinear)",
        "input_size": args.input_size,
        **({"low_res": f"the first {r.low_epochs} epochs at {r.low_size} px"} if r.low_epochs else {}),
        "normalization": args.norm,
        "init": f"{args.init.name} (metadata.init_from)" if args.init else "random (zoo initialisation)" + (
            f"; last layer Kaiming uniform with bias {args.head_bias:g} (logits pass a ReLU)"
            if args.head_bias is not None else ""),
        "threads": args.threads,
    }


def _sidecar(r: SimpleNamespace, acc: float, acc10: float, elapsed: float, history: list) -> dict:
    """The checkpoint's JSON sidecar (what models/shipped.py registers), with the run's provenance."""
    args, ds, split = r.args, r.ds, r.split
    meta = {
        "dataset": {
            "source": args.data.name,
            "sha256": ds["sha256"],
            "images": int(len(ds["labels"])),
            "train_images": int(len(split.train)),
            "holdout_images": int(len(split.hold)),
            "holdout_list": split.file.name,
            "holdout_list_sha256": split.sha,
            "holdout_split": f"classes in sorted order, one np.random.default_rng({args.split_seed}); per class "
                             f"choice(len(files), size={args.holdout // len(r.classes)}, replace=False) indexes "
                             "the class's sorted file names; listed class-major in file-name order",
            "split_seed": args.split_seed,
        },
        "holdout_top1": round(acc, 4),
        # the quick check in tests/models/test_shipped_weights.py: every 10th file of the held-out list
        "holdout_top1_every10th": round(acc10, 4),
        "holdout_preprocessing": "mobile_export.calibration.preprocess_image (the zoo's path for input_size)",
        "recipe": _recipe(r),
        "seed": args.seed,
        "history": history,
        "training_wall_time_s": round(elapsed, 1),
        "params": sum(p.numel() for p in r.model.parameters()),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "tool": "tools/train_reference.py",
    }
    prior = init_provenance(args.init)
    if prior:
        meta["init_from"] = prior
        meta["training_wall_time_total_s"] = round(
            elapsed + prior.get("training_wall_time_total_s", prior.get("training_wall_time_s", 0.0)), 1)
    return {"model": args.model, "weights_name": args.weights_name, "num_classes": len(r.classes),
            "input_size": args.input_size, "mean": list(r.mean), "std": list(r.std), "labels": r.classes,
            "metadata": meta}


def _write(r: SimpleNamespace, elapsed: float, history: list, x_hold: torch.Tensor, y_hold: torch.Tensor) -> None:
    """Final exact-path evaluation, then the float32 state_dict, the held-out list and the sidecar."""
    args = r.args
    model = r.model.to(memory_format=torch.contiguous_format).eval()
    acc = evaluate(model, x_hold.contiguous(), y_hold)
    acc10 = evaluate(model, x_hold[::10].contiguous(), y_hold[::10])
    state = {k: (v.detach().float().contiguous() if v.is_floating_point() else v.detach().contiguous())
             for k, v in model.state_dict().items()}
    args.out.mkdir(parents=True, exist_ok=True)
    if not r.split.file.is_file():
        cifar_data.atomic_write(r.split.file, r.split.text)
        log.info("wrote %s (%d files, sha256 %s)", r.split.file, len(r.split.hold), r.split.sha)
    stem = f"{args.model}_{args.weights_name}"
    pt = args.out / f"{stem}.pt"
    cifar_data.atomic_save(state, pt)
    sidecar = _sidecar(r, acc, acc10, elapsed, history)
    cifar_data.atomic_write(args.out / f"{stem}.json", json.dumps(sidecar, indent=2) + "\n")
    log.info("wrote %s (%.1f MB) and %s.json: held-out top-1 %.4f, %.1f min of training",
             pt, pt.stat().st_size / 1e6, stem, acc, elapsed / 60)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    run = _setup(args)
    if args.bench:
        return _bench(run)
    elapsed, history, x_hold, y_hold = _train(run)
    _write(run, elapsed, history, x_hold, y_hold)
    return 0


if __name__ == "__main__":
    sys.exit(main())
