"""The batch matrix file (TOML): which cells ``mobile-export batch`` exports and validates.

A cell is one export + validation: a model × a precision × an input size, with the settings of the
file's top level, overridden per model by ``[model."PATTERN"]`` tables (glob patterns, applied in
file order, later wins)::

    models = ["mobilenet_v3_small", "squeezenet1_*"]   # names or glob patterns of registered models
    precisions = ["fp32", "int8"]
    input_sizes = [224]          # optional; default: the model's (or its weights') input size
    weights = "cifar10"          # a registered weights name or a state_dict path
    calibration = "calib/"       # int8 cells only; default: the embedded set
    num_calibration = 256
    data = "cifar10"             # validation data: as `validate --data`
    num = 1000                   # validation samples
    gate = "gate.toml"           # gate file applied by every cell's validation
    input = "pixels"             # or "normalized"
    softmax = false
    latency_runs = 10
    seed = 0

    [model."mobilenet_v3_*"]
    precisions = ["int8"]

Relative paths are relative to the matrix file; ``${VAR}`` expands from the environment. The whole
file is checked before anything runs: a bad key, an unknown model, a missing file or an option that
does not apply is one ``MatrixError`` (exit 2) naming the cell.
"""
from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mobile_export import lazy
from mobile_export.check.gate import read_gate_file
from mobile_export.errors import MatrixError, MobileExportError
from mobile_export.options import ExportOptions, InputKind, Precision

# key → (type, meaning); the keys a cell carries (``models`` and ``model`` only at the top level)
CELL_KEYS: dict[str, tuple[type | tuple, str]] = {
    "precisions": (list, "precisions: fp32, fp16, int8, dynamic"),
    "input_sizes": (list, "square input sizes"),
    "weights": (str, "registered weights name or state_dict path"),
    "calibration": (str, "int8 calibration source"),
    "num_calibration": (int, "int8 calibration images"),
    "data": (str, "validation data (as validate --data)"),
    "num": (int, "validation samples"),
    "gate": (str, "gate TOML file"),
    "input": (str, "pixels or normalized"),
    "softmax": (bool, "probabilities output"),
    "latency_runs": (int, "timed runs per runtime in validation (0: none)"),
    "seed": (int, "reference and sampling seed"),
}
PATH_KEYS = ("weights", "calibration", "data", "gate")
NAMED_DATA = ("cifar10", "cifar10-default")  # validate's registered data sources
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class Cell:
    """One export + validation of the matrix, everything resolved (paths absolute)."""

    model: str
    precision: Precision
    input_size: int
    weights: str | None = None
    calibration: str | None = None
    num_calibration: int | None = None
    data: str | None = None
    num: int | None = None
    gate: str | None = None
    input: InputKind = InputKind.PIXELS
    softmax: bool = False
    latency_runs: int = 10
    seed: int = 0
    labels: dict = field(default_factory=dict, compare=False)  # key → the text the matrix file gave

    @property
    def id(self) -> str:
        """Folder name under --out: ``model/precision-SIZE`` (+ ``-normalized``, ``-softmax``)."""
        tail = ("-normalized" if self.input is InputKind.NORMALIZED else "") + ("-softmax" if self.softmax else "")
        return f"{self.model}/{self.precision.value}-{self.input_size}{tail}"

    def spec(self) -> dict[str, Any]:
        """What defines the cell's result (for --resume): its settings with paths as the file gave them."""
        d = asdict(self)
        d.pop("labels")
        d["precision"], d["input"] = self.precision.value, self.input.value
        d.update({k: self.labels.get(k, d[k]) for k in PATH_KEYS if d[k] is not None})
        return d

    def export_options(self, **overrides) -> ExportOptions:
        int8 = self.precision is Precision.INT8
        kw = dict(precision=self.precision, weights=self.weights, input_size=self.input_size, input=self.input,
                  softmax=self.softmax, seed=self.seed,
                  calibration=self.calibration if int8 else None,
                  num_calibration=self.num_calibration if int8 else None)
        kw.update(overrides)
        return ExportOptions(**kw)


@dataclass(frozen=True)
class Matrix:
    path: Path
    cells: tuple[Cell, ...]

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps([c.spec() for c in self.cells], sort_keys=True).encode()).hexdigest()


def _expand(text: str, where: str) -> str:
    def sub(m: re.Match) -> str:
        if m.group(1) not in os.environ:
            raise MatrixError(f"{where} uses ${{{m.group(1)}}}, which is not set; set it in the environment or "
                              "write the path out.")
        return os.environ[m.group(1)]

    return _VAR.sub(sub, text)


def _check_types(table: dict, where: str, allowed: dict) -> None:
    for key, value in table.items():
        if key not in allowed:
            raise MatrixError(f"{where}: unknown key '{key}'; the keys are {', '.join(sorted(allowed))}.")
        kind = allowed[key][0]
        if kind is int and isinstance(value, bool) or not isinstance(value, kind):
            raise MatrixError(f"{where}: '{key}' must be {getattr(kind, '__name__', kind)} ({allowed[key][1]}), "
                              f"got {value!r}.")


def _zoo():
    """The model registry, imported on first use (torch): ``mobile-export --help`` must not wait for it."""
    return lazy.load("mobile_export.models")


def _models(patterns: list, where: str) -> list[str]:
    known, names = _zoo().list_models(), []
    for p in patterns:
        if not isinstance(p, str):
            raise MatrixError(f"{where}: models must be names or glob patterns, got {p!r}.")
        hit = [n for n in known if fnmatch.fnmatchcase(n, p)]
        if not hit:
            close = [n for n in known if p.replace("*", "") in n][:3]
            raise MatrixError(f"{where}: '{p}' matches no registered model" +
                              (f" (did you mean {', '.join(close)}?)" if close else "") +
                              "; run `mobile-export list` for the names.")
        names += [n for n in hit if n not in names]
    return names


def read_matrix(path: str | os.PathLike) -> dict:
    p = Path(path)
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MatrixError(f"matrix file {p} does not exist; pass an existing TOML file.") from None
    except (OSError, UnicodeDecodeError) as e:
        raise MatrixError(f"cannot read matrix file {p} ({getattr(e, 'strerror', None) or e}).") from None
    except tomllib.TOMLDecodeError as e:
        raise MatrixError(f"matrix file {p} is not valid TOML ({e}); fix the syntax.") from None
    return raw


def load_matrix(path: str | os.PathLike) -> Matrix:
    """Parse and check the matrix file; every cell resolved, or MatrixError (exit 2)."""
    p = Path(path).resolve()
    raw = read_matrix(p)
    overrides = raw.pop("model", {})
    top_keys = {**CELL_KEYS, "models": (list, "registered model names or glob patterns")}
    _check_types(raw, str(p), top_keys)
    if not isinstance(overrides, dict):
        raise MatrixError(f"{p}: 'model' must be tables [model.\"PATTERN\"] of per-model settings.")
    if "models" not in raw or not raw["models"]:
        raise MatrixError(f"{p}: no 'models' list; name the models (or glob patterns) to export.")
    names = _models(raw.pop("models"), str(p))
    for pattern, table in overrides.items():
        if not isinstance(table, dict):
            raise MatrixError(f"{p}: [model.\"{pattern}\"] must be a table of settings.")
        _check_types(table, f"{p} [model.\"{pattern}\"]", CELL_KEYS)
        _models([pattern], f"{p} [model.\"{pattern}\"]")
    cells = []
    for name in names:
        settings = dict(raw)
        for pattern, table in overrides.items():
            if fnmatch.fnmatchcase(name, pattern):
                settings.update(table)
        cells += _cells(name, settings, p)
    ids = [c.id for c in cells]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise MatrixError(f"{p}: cell {dup[0]} appears twice; list each precision and input size once.")
    return Matrix(p, tuple(cells))


def _cells(name: str, s: dict, path: Path) -> list[Cell]:
    precisions = s.get("precisions", ["fp32"])
    sizes = s.get("input_sizes", [None])
    cells = []
    for precision in precisions:
        for size in sizes:
            where = f"{path.name}: cell {name}/{precision}" + (f"-{size}" if size else "")
            kw = {k: v for k, v in s.items() if k in CELL_KEYS and k not in ("precisions", "input_sizes")}
            labels = {k: kw[k] for k in PATH_KEYS if k in kw}
            for k in PATH_KEYS:
                if k in kw and not (k in ("weights",) and _registered_weights(name, kw[k])) and \
                        not (k == "data" and kw[k] in NAMED_DATA):
                    kw[k] = _resolve_path(_expand(kw[k], where), path.parent, where, k)
            try:
                if "input" in kw:
                    kw["input"] = InputKind.parse(kw["input"])
                config = _zoo().configure(name, weights=kw.get("weights"), input_size=size)
                cell = Cell(model=name, precision=Precision.parse(precision), input_size=config.input_size,
                            labels=labels, **kw)
                cell.export_options()
                if cell.gate:
                    read_gate_file(cell.gate)
            except MatrixError:
                raise
            except MobileExportError as e:
                raise MatrixError(f"{where}: {e}") from None
            cells.append(cell)
    return cells


def _registered_weights(name: str, weights: str) -> bool:
    return weights in _zoo().get_spec(name).weights


def _resolve_path(text: str, base: Path, where: str, key: str) -> str:
    p = (base / Path(text).expanduser()).resolve()
    if not p.exists():
        hint = " (a registered weights name of this model, or a state_dict file)" if key == "weights" else ""
        raise MatrixError(f"{where}: {key} {text} does not exist{hint}; fix the path (relative to the matrix file).")
    return str(p)
