"""tools/docs_tables.py: every measurement table in docs/ is what its committed JSON renders, a changed
figure makes --check fail naming the table, and regenerating puts the new figure in the table."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dt(tool):
    return tool("docs_tables")


@pytest.fixture
def checkout(dt, tmp_path) -> Path:
    """A copy of what the tables are made of: docs/ (with results/) and the peers' figures."""
    shutil.copytree(REPO / "docs", tmp_path / "docs")
    (tmp_path / dt.PEERS).parent.mkdir(parents=True)
    shutil.copy(REPO / dt.PEERS, tmp_path / dt.PEERS)
    return tmp_path


def _set_int8(root: Path, file: str, model: str, **fields) -> None:
    """Change the int8 row of ``model`` in docs/results/``file`` (a copy)."""
    path = root / "docs" / "results" / file
    doc = json.loads(path.read_text())
    row = next(r for r in doc["rows"] if r["model"] == model and r["precision"] == "int8")
    row.update(fields)
    path.write_text(json.dumps(doc, ensure_ascii=False))


def test_committed_docs_match_their_data():
    run = subprocess.run([sys.executable, str(REPO / "tools" / "docs_tables.py"), "--check"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "all 5 tables match their data" in run.stdout


def test_every_table_is_marked_in_a_doc_and_renders_the_readme_figures(dt):
    differ, missing = dt.regenerate(REPO, check=True)
    assert (differ, missing) == ([], [])
    text = (REPO / "docs" / "benchmarks.md").read_text()
    assert "| mobilenet_v2 | 120.77M | 49.86M | 0.41 | 49.17M | 50.28M | 1.01 | 1 | 21.4 dB |" in text
    assert "| espnetv2_s1_0 | 66.10M | 78.64M | **1.19** | 1 | 17.0 dB¹ | 0.75¹ |" in text
    acc = dt.ci_accuracy(REPO)
    assert "| mobilenet_v2 | 64 | 3+20+4+12 (27+105+17+40) | 85.62% | 85.62% | 85.80% | −0.18 pp (−0.38 .. +0.02) | 0.3 |" in acc


def test_a_changed_figure_fails_check_naming_its_table(dt, checkout, capsys):
    _set_int8(checkout, "arm_cortex-a76.json", "mobilenet_v2", instructions_median=48_000_000)
    assert dt.main(["--check", "--root", str(checkout)]) == 1
    err = capsys.readouterr().err
    assert "docs/benchmarks.md: table arm-peers differs from its data" in err
    assert "arm-families" not in err and "ci-accuracy" not in err
    assert "49.86M" in (checkout / "docs" / "benchmarks.md").read_text()  # --check changes nothing


def test_regenerating_puts_the_new_figure_in_the_table(dt, checkout):
    _set_int8(checkout, "arm_cortex-a76.json", "mobilenet_v2", instructions_median=48_000_000)
    _set_int8(checkout, "arm_families_cortex-a76.json", "fbnet_b",
              export={"partitions": 2, "sqnr_db": 19.04, "top1_agreement": 0.5})
    assert dt.main(["--root", str(checkout)]) == 0
    text = (checkout / "docs" / "benchmarks.md").read_text()
    # ratios follow: 48.00 / 120.77 = 0.40, 48.00 / 49.17 (onnx2tf, the best peer) = 0.98
    assert "| mobilenet_v2 | 120.77M | 48.00M | 0.40 | 49.17M | 50.28M | 0.98 | 1 | 21.4 dB |" in text
    assert "| fbnet_b | 122.22M | 54.48M | 0.45 | 2 | 19.0 dB | 0.50 |" in text
    assert "49.86M" not in text
    assert dt.main(["--check", "--root", str(checkout)]) == 0


def test_a_marker_naming_no_table_is_an_error(dt, checkout, capsys):
    doc = checkout / "docs" / "int8.md"
    doc.write_text(doc.read_text() + "\n<!-- table: no-such-table -->\n| x |\n<!-- /table -->\n")
    assert dt.main(["--check", "--root", str(checkout)]) == 2
    assert "no-such-table" in capsys.readouterr().err


def test_figures_are_formatted_as_the_docs_print_them(dt):
    assert [dt.mega(120_770_000), dt.mega(None)] == ["120.77M", "–"]
    assert [dt.signed(0.38), dt.signed(-0.12), dt.signed(0.0)] == ["+0.38", "−0.12", "+0.00"]
    assert [dt.agreement(0.28), dt.agreement(0.975), dt.agreement(1.0)] == ["0.28", "0.975", "1.00"]
    assert [dt.ratio(49.86, 120.77), dt.ratio(78.64, 66.10)] == ["0.41", "**1.19**"]
