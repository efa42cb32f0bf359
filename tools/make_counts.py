"""Rewrite the COUNTS table of models/counts.py from freshly built models (parameters, and MACs at
each model's default input size): run after adding or changing a model; the zoo test fails until then.

    python tools/make_counts.py
"""
from __future__ import annotations

import re
from pathlib import Path

from mobile_export.models import counts, get_model, get_spec, list_models
from mobile_export.models.profile import count_macs, count_params


def table() -> str:
    rows = []
    for name in list_models():
        model = get_model(name)
        rows.append(f'    "{name}": ({count_params(model)}, {count_macs(model, get_spec(name).input_size)}),')
    return "\n".join(rows)


def main() -> None:
    path = Path(counts.__file__)
    text = path.read_text()
    path.write_text(re.sub(r"(COUNTS: dict\[str, tuple\[int, int\]\] = \{\n).*?(^\})",
                           lambda m: m.group(1) + table() + "\n" + m.group(2), text, flags=re.S | re.M))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
