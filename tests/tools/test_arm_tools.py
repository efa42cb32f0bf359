"""The ARM benchmark's table and the profiler's cut points (pure functions; the emulated runs
themselves are tested in tests/runtimes/test_arm.py)."""
from __future__ import annotations

import json

from onnx import helper


def test_bench_table_compares_with_the_peers_and_says_what_is_missing(tool):
    bench = tool("arm_bench")
    peers = json.loads(bench.PEERS.read_text())
    assert "provenance" in peers and peers["models"]["shufflenet_v2_x1_0"]["onnx2tf_int8"] == 24.56e6
    rows = [{"model": "shufflenet_v2_x1_0", "precision": "fp32", "instructions_median": 78.05e6},
            {"model": "shufflenet_v2_x1_0", "precision": "int8", "instructions_median": 29.44e6,
             "export": {"partitions": 1, "sqnr_db": 30.2}},
            {"model": "squeezenet1_1", "precision": "fp32", "instructions_median": None}]
    md = bench.table(rows, peers, "cortex-a76")
    line = next(r for r in md.splitlines() if r.startswith("| shufflenet_v2_x1_0"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[1:4] == ["78.05M", "29.44M", "0.38"] and cells[4] == "24.56M"
    assert cells[6] == f"{29.44 / 24.56:.2f}" and cells[7] == "1" and cells[8] == "30.2 dB"
    assert "| squeezenet1_1 | n/a |" in md


def test_profile_cuts_keep_every_tensor_a_later_node_reads(tool):
    profile = tool("arm_profile")
    nodes = [helper.make_node("Conv", ["x", "w"], ["a"]), helper.make_node("Relu", ["a"], ["b"]),
             helper.make_node("Add", ["a", "b"], ["c"]), helper.make_node("Relu", ["c"], ["y"])]
    assert profile.live_tensors(nodes, 0, {"y"}) == ["a"]
    assert profile.live_tensors(nodes, 1, {"y"}) == ["a", "b"]     # the residual branch stays live
    assert profile.live_tensors(nodes, 2, {"y"}) == ["c"]
    assert profile.live_tensors(nodes, 3, {"y"}) == ["y"]
