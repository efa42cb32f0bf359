"""The package's house rules, read from the source with ``ast``: arrows point down only, no import
circles, one module per heavy runtime, a docstring on every module."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Source folder -> the module prefix it installs as (models/ and calibration/ live beside the package).
ROOTS = {"mobile_export": "mobile_export", "models": "mobile_export.models", "calibration": "mobile_export.calibration"}

# The stages, lowest first. A unit may import units of a lower rank only (and itself): cli → batch → api →
# build / check (siblings: neither imports the other) → quantize → convert → runtimes / report / reference →
# models / calibration → core.
RANKS = {
    "mobile_export.errors": 0, "mobile_export.logs": 0, "mobile_export.lazy": 0,
    "mobile_export.options": 1, "mobile_export.metrics": 1,
    "mobile_export.fidelity": 2, "mobile_export.artifacts": 2,
    "mobile_export.models": 3, "mobile_export.calibration": 3,
    "mobile_export.reference": 4, "mobile_export.runtimes": 4, "mobile_export.report": 4,
    "mobile_export.convert": 5,
    "mobile_export.quantize": 6,
    "mobile_export.build": 7, "mobile_export.check": 7,
    "mobile_export.api": 8,
    "mobile_export.batch": 9, "mobile_export.bench": 9,
    "mobile_export.cli": 10,
    "mobile_export": 11,  # the package __init__: lazy names only
}
# The one module allowed each heavy import (guest_runner runs inside the emulated ARM guest).
ONLY_IN = {
    "ai_edge_litert": {"mobile_export.runtimes.host", "mobile_export.runtimes.arm.guest_runner"},
    "tflite_runtime": {"mobile_export.runtimes.host"},
    "onnxruntime": {"mobile_export.runtimes.onnxruntime"},
    "ray": {"mobile_export.batch.runner"},  # the optional [cluster] extra: nothing else may need it
}
ONLY_CALLED_IN = {"TFLiteConverter": {"mobile_export.convert.to_tflite"},
                  "InferenceSession": {"mobile_export.runtimes.onnxruntime"}}


def _modules() -> dict[str, Path]:
    out = {}
    for folder, prefix in ROOTS.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            rel = path.relative_to(REPO / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            out[".".join([prefix, *parts]) if parts else prefix] = path
    return out


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for sub in node.body:
                lines.update(range(sub.lineno, (sub.end_lineno or sub.lineno) + 1))
    return lines


def _is_lazy_load(node: ast.AST) -> bool:
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load"
            and isinstance(node.func.value, ast.Name) and node.func.value.id == "lazy" and len(node.args) == 1
            and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str))


def _imports(name: str) -> tuple[set[str], set[str]]:
    """(modules of ours imported by ``name``, every top-level package it imports), function-local
    imports and ``lazy.load("...")`` calls included, ``if TYPE_CHECKING`` ones left out."""
    tree = ast.parse(MODULES[name].read_text())
    skip = _type_checking_lines(tree)
    base = name if _is_package(name) else name.rsplit(".", 1)[0]
    ours, tops = set(), set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level:
                mod = ".".join(base.split(".")[: len(base.split(".")) - node.level + 1] + ([mod] if mod else []))
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in MODULES else mod for a in node.names]
        elif _is_lazy_load(node):  # lazy.load("pkg.module"): an import all the same
            targets = [node.args[0].value]
        else:
            continue
        for t in targets:
            tops.add(t.split(".")[0])
            while t and t not in MODULES and "." in t:
                t = t.rsplit(".", 1)[0]
            if t in MODULES and t != name:
                ours.add(t)
    return ours, tops


GRAPH = {m: _imports(m)[0] for m in MODULES}


def _unit(name: str) -> str:
    return max((u for u in RANKS if name == u or name.startswith(u + ".")), key=len)


def test_every_module_belongs_to_a_ranked_stage():
    assert all(_unit(m) for m in MODULES)
    assert {"mobile_export.convert.lowering.registry", "mobile_export.quantize.search",
            "mobile_export.check.engine", "mobile_export.runtimes.host"} <= set(MODULES)


def test_arrows_point_down_only():
    upward = [f"{m} -> {t}" for m, targets in GRAPH.items() for t in targets
              if _unit(t) != _unit(m) and RANKS[_unit(t)] >= RANKS[_unit(m)]]
    assert not upward, "imports that point up or sideways:\n" + "\n".join(sorted(upward))


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_circles():
    # a package __init__ that re-exports its submodules is not a circle with them: leave those edges out
    graph = {m: {t for t in ts if not (_is_package(t) and m.startswith(t + "."))} for m, ts in GRAPH.items()}
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_models_import_only_torch_and_errors():
    for m in (m for m in MODULES if _unit(m) == "mobile_export.models"):
        ours, tops = _imports(m)
        assert {_unit(t) for t in ours} <= {"mobile_export.models", "mobile_export.errors"}, m
        assert not tops & {"tensorflow", "onnx", "onnxruntime", "ai_edge_litert"}, m


@pytest.mark.parametrize("package", sorted(ONLY_IN))
def test_one_module_imports_each_runtime(package):
    users = {m for m in MODULES if package in _imports(m)[1]}
    assert users <= ONLY_IN[package], users - ONLY_IN[package]


@pytest.mark.parametrize("name", sorted(ONLY_CALLED_IN))
def test_one_module_calls_each_factory(name):
    users = {m for m, p in MODULES.items() if name in {n.attr for n in ast.walk(ast.parse(p.read_text()))
                                                        if isinstance(n, ast.Attribute)}}
    assert users == ONLY_CALLED_IN[name]


def test_every_module_says_its_job():
    # generated code (the TFLite metadata schema, kept byte-identical to its source) says its job in
    # its package's docstring
    missing = [m for m, p in MODULES.items() if not p.name.endswith("_py_generated.py")
               and not (ast.get_docstring(ast.parse(p.read_text())) or "").strip()]
    assert not missing, missing


def test_the_rules_catch_an_upward_import(tmp_path):
    """The checker itself: a stage that imports the API, or build importing check, is reported."""
    for src, dst in (("mobile_export.convert.to_onnx", "mobile_export.api"),
                     ("mobile_export.build", "mobile_export.check.engine")):
        GRAPH[src].add(dst)
        try:
            with pytest.raises(AssertionError, match=f"{src} -> {dst}"):
                test_arrows_point_down_only()
        finally:
            GRAPH[src].discard(dst)


# Modules that may import inside a function, and why. Every other module imports at its top, and heavy
# runtimes through ``mobile_export.lazy.load`` (the reason is stated there).
LOCAL_IMPORTS_ALLOWED = {
    "mobile_export.runtimes.arm.guest_runner": "runs in the emulated guest: numpy's path comes from the job file",
}


def test_imports_are_at_the_top_of_each_module():
    inside = []
    for m, p in MODULES.items():
        if m in LOCAL_IMPORTS_ALLOWED or p.name.endswith("_py_generated.py"):
            continue
        for fn in ast.walk(ast.parse(p.read_text())):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                inside += [f"{m}:{n.lineno} {ast.unparse(n)}" for n in ast.walk(fn)
                           if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert not inside, "imports inside functions (move them to the top, or use lazy.load):\n" + "\n".join(inside)


def test_tools_use_only_public_names():
    """tools/ (developer scripts) go through the package's public names: no ``from mobile_export... import
    _private`` and no ``module._private`` of ours, so a refactor of internals cannot silently break them."""
    private = []
    for path in sorted((REPO / "tools").glob("*.py")):
        tree = ast.parse(path.read_text())
        ours = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mobile_export"):
                private += [f"{path.name}: from {node.module} import {a.name}" for a in node.names
                            if a.name.startswith("_")]
                ours.update(a.asname or a.name for a in node.names)
            elif isinstance(node, ast.Import):
                ours.update(a.asname or a.name.split(".")[0] for a in node.names if a.name.startswith("mobile_export"))
        private += [f"{path.name}:{n.lineno} {ast.unparse(n)}" for n in ast.walk(tree)
                    if isinstance(n, ast.Attribute) and n.attr.startswith("_") and not n.attr.startswith("__")
                    and isinstance(n.value, ast.Name) and n.value.id in ours]
    assert not private, "\n".join(private)
