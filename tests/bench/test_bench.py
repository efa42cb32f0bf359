"""`mobile-export bench`: the ARM benchmark's table, the profiler's cut points and bypass, the int8
ceiling's simulation (pure functions; the emulated runs themselves are tested in
tests/runtimes/test_arm.py), and the commands' bad input."""
from __future__ import annotations

import json

import pytest

from onnx import helper

from mobile_export.bench import arm, ceiling, profile
from mobile_export.cli import main


def test_bench_table_compares_with_the_peers_and_says_what_is_missing():
    bench = arm
    peers = json.loads(bench.PEERS.read_text())
    assert bench.peers("cortex-a76") == peers and bench.peers("cortex-a55") == {}
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


def test_profile_cuts_keep_every_tensor_a_later_node_reads():
    nodes = [helper.make_node("Conv", ["x", "w"], ["a"]), helper.make_node("Relu", ["a"], ["b"]),
             helper.make_node("Add", ["a", "b"], ["c"]), helper.make_node("Relu", ["c"], ["y"])]
    assert profile.live_tensors(nodes, 0, {"y"}) == ["a"]
    assert profile.live_tensors(nodes, 1, {"y"}) == ["a", "b"]     # the residual branch stays live
    assert profile.live_tensors(nodes, 2, {"y"}) == ["c"]
    assert profile.live_tensors(nodes, 3, {"y"}) == ["y"]


def test_bypass_passes_the_full_shaped_input_through_and_prunes_what_nobody_reads():
    """SE block y = x + x·hard_sigmoid(conv(pool(x))) with Add and Mul bypassed: y = x, the gate branch and
    its weights gone; the Mul's full-shaped input is the one passed through even when it comes second."""
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, numpy_helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 3, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 3, 3])
    w = numpy_helper.from_array(np.ones((4, 4, 1, 1), np.float32), "w")
    nodes = [helper.make_node("GlobalAveragePool", ["x"], ["p"]), helper.make_node("Conv", ["p", "w"], ["c"]),
             helper.make_node("HardSigmoid", ["c"], ["g"]), helper.make_node("Mul", ["g", "x"], ["m"]),
             helper.make_node("Add", ["x", "m"], ["y"])]
    proto = helper.make_model(helper.make_graph(nodes, "se", [x], [y], [w]), opset_imports=[helper.make_opsetid("", 13)])
    out = profile.bypass(proto, {"Add", "Mul"})
    assert [n.op_type for n in out.graph.node] == ["Identity"] and not out.graph.initializer
    onnx.checker.check_model(out)
    v = np.random.default_rng(0).standard_normal((1, 4, 3, 3)).astype(np.float32)
    got = ort.InferenceSession(out.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": v})[0]
    np.testing.assert_array_equal(got, v)
    assert len(proto.graph.node) == 5  # the input model is left as it was


def test_int8_ceiling_simulates_int8_only_at_the_ranged_tensors():
    """The ceiling's simulation quantizes exactly the tensors it is given ranges for: none → the float
    graph; a fitting range → small error; a range that clips most values → large error."""
    import numpy as np
    from onnx import TensorProto, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((10, 3, 3, 3)).astype(np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["p"]), helper.make_node("Flatten", ["p"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], [w])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    x = rng.standard_normal((6, 8, 8, 3)).astype(np.float32)
    from mobile_export.convert.lowering import LoweredGraph

    ref = ceiling.run_graph(LoweredGraph(proto), x, batch=1)
    assert ceiling.simulated(proto, {}, x, ref)["sqnr_db"] > 100
    fit = ceiling.simulated(proto, {"r": (0.0, float(ref.max()) * 4)}, x, ref)
    clipped = ceiling.simulated(proto, {"r": (0.0, 0.05)}, x, ref)
    assert 25 < fit["sqnr_db"] < 100 and clipped["sqnr_db"] < 10


@pytest.mark.parametrize("bad", ["weights", "calibration", "golden"])
def test_bench_ceiling_bad_input_is_one_sentence_exit_2(tmp_path, capsys, bad):
    """A --weights file, --calibration folder or --golden folder that does not exist: one sentence
    naming it, exit 2, before any export."""
    missing = str(tmp_path / "missing")
    src = {"weights": ["--weights", missing], "calibration": ["--weights", "cifar10", "--calibration", missing],
           "golden": ["--golden", missing]}[bad]
    assert main(["bench", "ceiling", "mobilenet_v3_small", "--out", str(tmp_path / "out"), *src]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mobile-export: error: ") and "missing" in err and "Traceback" not in err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "out" / "mobilenet_v3_small").exists()


def test_bench_profile_bad_bypass_and_unknown_model_exit_2(tmp_path, capsys):
    from onnx import TensorProto, save

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 32, 32])
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    path = tmp_path / "model.onnx"
    save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    assert main(["bench", "profile", str(path), "--name", "mobilenet_v3_small", "--bypass", "Conv"]) == 2
    assert "no node of" in capsys.readouterr().err
    assert main(["bench", "profile", str(path), "--name", "resnet50"]) == 2
    assert "unknown model" in capsys.readouterr().err
