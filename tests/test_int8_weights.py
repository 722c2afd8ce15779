"""Int8 weights for matrix products (rag/embedding/int8_weights.py), on a small graph
built here: only constant f32 matrices used once become int8, and the graph
computes what it did within the rounding of each weight to its column's int8 step."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime
from onnx import TensorProto, helper, numpy_helper

from rag.embedding.int8_weights import int8_matmul_weights


def small_graph(rng: np.random.Generator) -> onnx.ModelProto:
    """x @ W (W constant), then @ S twice (S shared), then @ y (y an input)."""
    weight = rng.normal(size=(8, 6)).astype(np.float32)
    weight[:, 2] = 0  # an all-zero column keeps a usable scale
    shared = rng.normal(size=(6, 6)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "W"], ["a"]), helper.make_node("MatMul", ["a", "S"], ["b"]),
             helper.make_node("MatMul", ["b", "S"], ["c"]), helper.make_node("MatMul", ["c", "y"], ["out"])]
    graph = helper.make_graph(
        nodes, "small", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8]),
                         helper.make_tensor_value_info("y", TensorProto.FLOAT, [6, 3])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [2, 3])],
        [numpy_helper.from_array(weight, "W"), numpy_helper.from_array(shared, "S")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def run(model: onnx.ModelProto, feeds: dict) -> np.ndarray:
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


def test_constant_weights_used_once_become_int8_and_compute_the_same():
    rng = np.random.default_rng(0)
    model = small_graph(rng)
    feeds = {"x": rng.normal(size=(2, 8)).astype(np.float32), "y": rng.normal(size=(6, 3)).astype(np.float32)}
    expected = run(model, feeds)

    assert int8_matmul_weights(model) == 1  # W only: S is shared, y is an input
    onnx.checker.check_model(model)
    initializers = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    assert "W" not in initializers and initializers["W.int8"].dtype == np.int8
    assert np.abs(initializers["W.int8"]).max() == 127  # each column's largest weight uses the whole range
    assert (initializers["W.int8"][:, 2] == 0).all() and initializers["W.scale"][2] == 1.0
    assert initializers["S"].dtype == np.float32
    assert model.graph.node[0].op_type == "DequantizeLinear"  # constants first: still in order
    # rounding each weight to its column's int8 step: within a percent of the output's scale
    assert np.abs(run(model, feeds) - expected).max() < 0.01 * np.abs(expected).max()
