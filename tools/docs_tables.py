"""The measurement tables of docs/*.md, generated from the result files committed in docs/results/.

    python tools/docs_tables.py            # rewrite every table in place
    python tools/docs_tables.py --check    # exit 1 naming each table that differs from its data

A table lives between ``<!-- table: NAME -->`` and ``<!-- /table -->`` in a docs file; ``TABLES``
maps NAME to the function that renders it from its JSON (each file's ``provenance`` says who
measured it, where and when). The ARM files have the shape ``mobile-export bench arm --json`` writes
(``{"cpu", "rows": [{"model", "precision", "instructions_median", "export": {...}}]}``), so a fresh
benchmark run can replace one; the peers' figures are read from ``mobile_export/bench/arm_peers.json``.
Exit 0: every table matches its data (or was rewritten); 1: a table differs from its data (--check)
or is in no docs file; 2: a marker names no known table.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MARKED = re.compile(r"(<!-- table: (?P<name>[\w.-]+) -->\n)(?P<body>.*?)(<!-- /table -->)", re.S)
PEERS = Path("mobile_export") / "bench" / "arm_peers.json"  # relative to the checkout
MINUS = "\u2212"  # the tables print negative figures with a true minus sign


class UnknownTable(ValueError):
    """A marker names a table TABLES does not know."""


def load(root: Path, name: str) -> dict:
    return json.loads((root / "docs" / "results" / name).read_text())


# ------------------------------------------------------------------------------------- formatting


def mega(v: float | None) -> str:
    return f"{v / 1e6:.2f}M" if v else "–"


def signed(v: float) -> str:
    return ("+" if v >= 0 else MINUS) + f"{abs(v):.2f}"


def agreement(v: float) -> str:
    """Two decimals, three when the third is not zero (0.975 of 200 images)."""
    two = f"{v:.2f}"
    return two if abs(float(two) - v) < 1e-9 else f"{v:.3f}"


def ratio(q: float, f: float) -> str:
    r = f"{q / f:.2f}"
    return f"**{r}**" if q > f else r  # int8 slower than fp32: in bold


def markdown(header: list[str], align: list[str], rows: list[list[str]]) -> str:
    def line(cells: list[str]) -> str:
        return "|" + "|".join(f" {c} " if c else " " for c in cells) + "|"

    return "\n".join([line(header), "|" + "|".join(align) + "|", *map(line, rows)]) + "\n"


def by_model(doc: dict) -> dict[str, dict[str, dict]]:
    """{model: {precision: row}} in the file's order."""
    out: dict[str, dict[str, dict]] = {}
    for r in doc["rows"]:
        out.setdefault(r["model"], {})[r["precision"]] = r
    return out


# ---------------------------------------------------------------------------------------- tables


def arm_peers(root: Path) -> str:
    """Ours (cortex-a76, pixel input) beside the peers' int8 figures."""
    peers = json.loads((root / PEERS).read_text())["models"]
    rows = []
    for model, p in by_model(load(root, "arm_cortex-a76.json")).items():
        f, q = p["fp32"]["instructions_median"], p["int8"]["instructions_median"]
        facts, peer = p["int8"]["export"], peers.get(model, {})
        best = min((v for k, v in peer.items() if k.endswith("_int8")), default=None)
        rows.append([model, mega(f), mega(q), ratio(q, f), mega(peer.get("onnx2tf_int8")),
                     mega(peer.get("litert_torch_int8")), f"{q / best:.2f}" if best else "–",
                     str(facts["partitions"]), f"{facts['sqnr_db']:.1f} dB"])
    return markdown(["model", "ours fp32", "ours int8", "int8 / fp32", "onnx2tf int8", "litert-torch int8",
                     "ours int8 / best peer", "int8 partitions", "int8 SQNR vs fp32"], ["---"] + ["---:"] * 8, rows)


def arm_a55(root: Path) -> str:
    rows = []
    for model, p in by_model(load(root, "arm_cortex-a55.json")).items():
        f, q = p["fp32"]["instructions_median"], p["int8"]["instructions_median"]
        rows.append([model, mega(f), mega(q), ratio(q, f)])
    return markdown(["model", "fp32", "int8", "int8 / fp32"], ["---"] + ["---:"] * 3, rows)


def arm_families(root: Path) -> str:
    rows = []
    for model, p in by_model(load(root, "arm_families_cortex-a76.json")).items():
        f, q = p["fp32"]["instructions_median"], p["int8"]["instructions_median"]
        facts, mark = p["int8"]["export"], p["int8"].get("marks", {})
        rows.append([model, mega(f), mega(q), ratio(q, f), str(facts["partitions"]),
                     f"{facts['sqnr_db']:.1f} dB" + mark.get("sqnr_db", ""),
                     agreement(facts["top1_agreement"]) + mark.get("top1_agreement", "")])
    return markdown(["model", "fp32", "int8", "int8 / fp32", "int8 partitions", "int8 SQNR vs fp32",
                     "int8 top-1 agreement"], ["---"] + ["---:"] * 6, rows)


def int8_ceiling(root: Path) -> str:
    def cell(d: dict, digits: int = 3) -> str:
        return f"{d['sqnr_db']:.1f} dB / {d['top1_agreement']:.{digits}f}"

    rows = []
    for r in load(root, "int8_ceiling.json")["rows"]:
        solo = r.get("solo", [])
        worst = f"{solo[0]['tensor']}: {cell(solo[0], 2)}" if solo else ""
        worst += "".join(f" (another: {cell(s, 2)})" for s in solo[1:])
        rows.append([r["model"], cell(r["ours"]), cell(r["sim"]), cell(r["oracle"]), worst])
    return markdown(["golden weights", "ours int8", "sim", "oracle", "one tensor alone, worst (32 images)"],
                    ["---"] * 5, rows)


def ci_accuracy(root: Path) -> str:
    rows = []
    for r in load(root, "ci_accuracy.json")["rows"]:
        epochs = "+".join(map(str, r["epochs"])) + " (" + "+".join(map(str, r["train_minutes"])) + ")"
        drop = f"{signed(r['drop_pp'])} pp ({signed(r['ci_low_pp'])} .. {signed(r['ci_high_pp'])})"
        rows.append([r["model"], str(r["input_size"]), epochs, f"{r['torch_fp32_top1_pct']:.2f}%",
                     f"{r['tflite_fp32_top1_pct']:.2f}%", f"{r['tflite_int8_top1_pct']:.2f}%", drop,
                     f"{r['gate_max_drop_pp']:g}"])
    return markdown(["model", "input", "epochs (min)", "PyTorch fp32", "TFLite fp32", "TFLite int8",
                     "int8 drop (95% CI)", "gate"], ["---"] * 8, rows)


TABLES = {"arm-peers": arm_peers, "arm-cortex-a55": arm_a55, "arm-families": arm_families,
          "int8-ceiling": int8_ceiling, "ci-accuracy": ci_accuracy}


# ------------------------------------------------------------------------------------ regenerate


def render(text: str, root: Path) -> tuple[str, list[str]]:
    """``text`` with every marked table rendered from its data, and the names of those that changed."""
    changed: list[str] = []

    def fill(m: re.Match) -> str:
        if m["name"] not in TABLES:
            raise UnknownTable(m["name"])
        body = TABLES[m["name"]](root)
        if body != m["body"]:
            changed.append(m["name"])
        return m.group(1) + body + m.group(4)

    return MARKED.sub(fill, text), changed


def regenerate(root: Path = REPO, check: bool = False) -> tuple[list[str], list[str]]:
    """Render every table in ``root``/docs/*.md (written back unless ``check``): (tables that
    differed, as ``FILE: table NAME``) and the TABLES no docs file marks."""
    differ, seen = [], set()
    for path in sorted((root / "docs").glob("*.md")):
        text = path.read_text()
        seen.update(m["name"] for m in MARKED.finditer(text))
        new, changed = render(text, root)
        differ += [f"{path.relative_to(root)}: table {name}" for name in changed]
        if changed and not check:
            path.write_text(new)
    return differ, sorted(set(TABLES) - seen)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 if a table differs from its data")
    ap.add_argument("--root", type=Path, default=REPO, help="the checkout (default: this one)")
    args = ap.parse_args(argv)
    try:
        differ, missing = regenerate(args.root, args.check)
    except UnknownTable as e:
        print(f"docs_tables: error: a marker names table {e.args[0]!r}; known: {', '.join(TABLES)}.", file=sys.stderr)
        return 2
    for name in missing:
        print(f"docs_tables: table {name!r} is in no docs/*.md file", file=sys.stderr)
    for line in differ:
        print(f"{line} {'differs from its data' if args.check else 'regenerated'}",
              file=sys.stderr if args.check else sys.stdout)
    if args.check:
        if not (differ or missing):
            print(f"docs_tables: all {len(TABLES)} tables match their data")
        return 1 if differ or missing else 0
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
