"""Int8 weights for an ONNX graph's matrix products, without calibration data.

Each ``MatMul`` whose second input is a constant f32 matrix gets that matrix
as int8, one symmetric scale per output column, behind a ``DequantizeLinear``.
OpenVINO compiles the pattern into matrix products that read int8 weights
and, with ``DYNAMIC_QUANTIZATION_GROUP_SIZE``, quantize the activations on the
fly: on this AVX512-VNNI CPU the verifier's three readings took 16 to 29 %
less time than with bf16 weights in three runs, its logits 0.05 from theirs
on average and its held-out figures the same (README, "Refusing").
"""
from __future__ import annotations

from collections import Counter

import numpy as np

INT8_MAX = 127


def int8_matmul_weights(model) -> int:
    """Rewrite ``model`` (an ``onnx.ModelProto``) in place; the number of weights made int8.

    A weight shared by several nodes, or fed as a graph input, is left as it is."""
    from onnx import helper, numpy_helper

    graph = model.graph
    initializers = {initializer.name: initializer for initializer in graph.initializer}
    uses = Counter(name for node in graph.node for name in node.input)
    graph_inputs = {value.name for value in graph.input}
    dequantizers = []
    for node in graph.node:
        name = node.input[1] if node.op_type == "MatMul" else None
        if name not in initializers or uses[name] != 1 or name in graph_inputs:
            continue
        weight = numpy_helper.to_array(initializers[name])
        if weight.dtype != np.float32 or weight.ndim != 2:
            continue
        scale = np.abs(weight).max(axis=0) / INT8_MAX
        scale[scale == 0] = 1.0
        quantized = np.clip(np.rint(weight / scale), -INT8_MAX, INT8_MAX).astype(np.int8)
        graph.initializer.remove(initializers[name])
        graph.initializer.extend([numpy_helper.from_array(quantized, f"{name}.int8"),
                                  numpy_helper.from_array(scale.astype(np.float32), f"{name}.scale"),
                                  numpy_helper.from_array(np.zeros(scale.shape, np.int8), f"{name}.zero")])
        dequantizers.append(helper.make_node("DequantizeLinear", [f"{name}.int8", f"{name}.scale", f"{name}.zero"],
                                             [f"{name}.dequantized"], axis=1, name=f"{name}.dequantize"))
        node.input[1] = f"{name}.dequantized"
    # the dequantizers read only constants: first in the node list keeps it topologically sorted
    nodes = dequantizers + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    return len(dequantizers)
