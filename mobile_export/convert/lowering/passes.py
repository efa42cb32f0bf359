"""ONNX graph rewrites run before lowering.

1. ``fuse_channel_shuffle``: Reshape(N,g,C/g,H,W) → Transpose(0,2,1,3,4) → Reshape(N,C,H,W) becomes
   one ``ChannelShuffle(groups=g)`` node (domain ``mobile_export``).
2. ``fold_channel_shuffle``: a shuffle whose every consumer is an ungrouped Conv is a fixed
   permutation of those convolutions' input channels: permute their weights and drop the shuffle.
Each rewrite appends a line to the recipe so the manifest says what was done.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np
import onnx
from onnx import helper, numpy_helper

from mobile_export.convert.graph import DOMAIN, attrs, channel_counts, copy_model, drop_unused_initializers, producers_of
from mobile_export.convert.graph import consumers_of as _consumers
from mobile_export.convert.graph import initializers as _initializers

from .hard_activations import defer_hard_activations
from .prelu import prelu_int8_form
from .registry import as_int_list
from .shuffle_routing import route_shuffle_split







def constants_to_initializers(graph: onnx.GraphProto) -> None:
    keep = []
    for n in graph.node:
        if n.op_type == "Constant" and len(n.attribute) == 1 and n.attribute[0].name == "value":
            t = onnx.TensorProto()
            t.CopyFrom(n.attribute[0].t)
            t.name = n.output[0]
            graph.initializer.append(t)
        else:
            keep.append(n)
    del graph.node[:]
    graph.node.extend(keep)


def fuse_channel_shuffle(graph: onnx.GraphProto, recipe: list[str]) -> None:
    inits = _initializers(graph)
    cons = _consumers(graph)
    outputs = {o.name for o in graph.output}
    remove, add = set(), {}
    for r1 in graph.node:
        if r1.op_type != "Reshape" or r1.input[1] not in inits:
            continue
        shape5 = as_int_list(numpy_helper.to_array(inits[r1.input[1]]))
        if len(shape5) != 5 or len(cons[r1.output[0]]) != 1 or r1.output[0] in outputs:
            continue
        tr = cons[r1.output[0]][0]
        if tr.op_type != "Transpose" or as_int_list(attrs(tr).get("perm", [])) != [0, 2, 1, 3, 4]:
            continue
        if len(cons[tr.output[0]]) != 1 or tr.output[0] in outputs:
            continue
        r2 = cons[tr.output[0]][0]
        if r2.op_type != "Reshape" or r2.input[1] not in inits:
            continue
        shape4 = as_int_list(numpy_helper.to_array(inits[r2.input[1]]))
        if len(shape4) != 4 or shape4[1] not in (shape5[1] * shape5[2], -1):
            continue
        g = shape5[1]
        node = helper.make_node("ChannelShuffle", [r1.input[0]], [r2.output[0]],
                                name=f"{r1.name or r1.output[0]}/channel_shuffle", domain=DOMAIN, groups=g)
        remove.update(id(n) for n in (r1, tr, r2))
        add[id(r1)] = node
        recipe.append(f"{node.name}: reshape→transpose→reshape fused into ChannelShuffle(groups={g})")
    if not remove:
        return
    new_nodes = []
    for n in graph.node:
        if id(n) in add:
            new_nodes.append(add[id(n)])
        elif id(n) not in remove:
            new_nodes.append(n)
    del graph.node[:]
    graph.node.extend(new_nodes)


def shuffle_permutation(channels: int, groups: int) -> np.ndarray:
    """perm[k] = input channel that lands at output channel k of a channel shuffle."""
    k = np.arange(channels)
    return (k % groups) * (channels // groups) + k // groups


def fold_channel_shuffle(graph: onnx.GraphProto, recipe: list[str]) -> None:
    inits = _initializers(graph)
    cons = _consumers(graph)
    outputs = {o.name for o in graph.output}
    dropped = []
    for sh in list(graph.node):
        if sh.op_type != "ChannelShuffle" or sh.output[0] in outputs:
            continue
        users = cons[sh.output[0]]
        if not users or any(
            u.op_type != "Conv" or int(attrs(u).get("group", 1)) != 1 or u.input[0] != sh.output[0]
            or u.input[1] not in inits for u in users
        ):
            recipe.append(f"{sh.name}: lowered as CONCATENATION → RESHAPE → TRANSPOSE → RESHAPE, consumers are not plain convs")
            continue
        g = int(attrs(sh)["groups"])
        for u in users:
            w = numpy_helper.to_array(inits[u.input[1]])
            perm = shuffle_permutation(w.shape[1], g)
            w2 = np.empty_like(w)
            w2[:, perm] = w  # conv(shuffle(x), W) == conv(x, W2)
            new_name = f"{u.input[1]}__unshuffled"
            if new_name not in inits:  # convs sharing a weight share its unshuffled copy
                graph.initializer.append(numpy_helper.from_array(w2, new_name))
                inits[new_name] = graph.initializer[-1]
            u.input[1] = new_name
            u.input[0] = sh.input[0]
        dropped.append(sh)
        recipe.append(f"{sh.name}: folded into the input channels of {', '.join(u.name for u in users)}")
    for sh in dropped:
        graph.node.remove(sh)
    drop_unused_initializers(graph)




def slices_to_split(graph: onnx.GraphProto, recipe: list[str]) -> None:
    """Slices that cut one tensor's channel axis into equal contiguous parts (how ``chunk`` exports)
    become one Split: SPLIT runs in XNNPACK and reads the input once."""
    inits = _initializers(graph)
    groups = defaultdict(list)
    for n in graph.node:
        if n.op_type != "Slice" or not all(i in inits for i in n.input[1:] if i):
            continue
        starts, ends = (as_int_list(numpy_helper.to_array(inits[n.input[i]])) for i in (1, 2))
        axes = as_int_list(numpy_helper.to_array(inits[n.input[3]])) if len(n.input) > 3 and n.input[3] else [0]
        steps = as_int_list(numpy_helper.to_array(inits[n.input[4]])) if len(n.input) > 4 and n.input[4] else [1]
        if len(starts) == 1 and axes[0] in (1, -3) and steps == [1]:
            groups[n.input[0]].append((starts[0], ends[0], n))
    channels = channel_counts(graph)
    for src, parts in groups.items():
        parts.sort(key=lambda p: p[0])
        sizes = [e - s for s, e, _ in parts]
        contiguous = parts[0][0] == 0 and all(parts[i][1] == parts[i + 1][0] for i in range(len(parts) - 1))
        if len(parts) < 2 or not contiguous or len(set(sizes)) != 1 or parts[-1][1] >= 2**31 - 1:
            continue
        if channels.get(src, parts[-1][1]) != parts[-1][1]:
            continue  # the slices leave channels out: not a split of the whole tensor
        first = parts[0][2]
        split = helper.make_node("Split", [src], [p[2].output[0] for p in parts], name=f"{first.name}/split", axis=1)
        nodes = list(graph.node)
        idx = min(nodes.index(p[2]) for p in parts)  # before every slice it replaces, whatever their order
        for _, _, n in parts:
            graph.node.remove(n)
        graph.node.insert(idx, split)
        recipe.append(f"{split.name}: {len(parts)} channel slices of {src} merged into one SPLIT")


def push_relu_through_concat(graph: onnx.GraphProto, recipe: list[str]) -> None:
    """Relu(Concat(a, b, ...)) → Concat(Relu(a), Relu(b), ...): each Relu then fuses into the op
    producing its input (XNNPACK has no standalone int8 RELU; ShuffleNetV1's stride-2 units need it)."""
    outputs = {o.name for o in graph.output}
    while True:  # a moved ReLU may land on another concatenation (nested concats): repeat
        cons = _consumers(graph)
        producers = producers_of(graph)
        movable = [
            (r, producers[r.input[0]]) for r in graph.node
            if r.op_type == "Relu" and r.input[0] in producers and producers[r.input[0]].op_type == "Concat"
            and len(cons[r.input[0]]) == 1 and r.input[0] not in outputs
        ]
        if not movable:
            return
        relu, cat = movable[0]
        new_inputs = []
        idx = list(graph.node).index(cat)
        for j, inp in enumerate(cat.input):
            name = f"{cat.output[0]}__relu{j}"
            graph.node.insert(idx, helper.make_node("Relu", [inp], [name], name=f"{relu.name}/in{j}"))
            idx += 1
            new_inputs.append(name)
        del cat.input[:]
        cat.input.extend(new_inputs)
        cat.output[0] = relu.output[0]
        graph.node.remove(relu)
        recipe.append(f"{relu.name}: ReLU moved before concatenation {cat.name} (fuses into its producers)")


def run_passes(proto: onnx.ModelProto, int8_forms: bool = False) -> tuple[onnx.ModelProto, list[str]]:
    """Every rewrite in order on a copy of ``proto``; ``int8_forms`` adds the int8 forms of the hard
    activations (``hard_activations``: fewer elementwise ops; float keeps XNNPACK's fused HARD_SWISH)
    and of PReLU (``prelu``: XNNPACK has no int8 PRELU; float keeps the one PRELU op)."""
    model = copy_model(proto)
    recipe: list[str] = []
    constants_to_initializers(model.graph)
    slices_to_split(model.graph, recipe)
    push_relu_through_concat(model.graph, recipe)
    fuse_channel_shuffle(model.graph, recipe)
    fold_channel_shuffle(model.graph, recipe)
    route_shuffle_split(model.graph, recipe)
    drop_unused_initializers(model.graph)
    if int8_forms:
        defer_hard_activations(model.graph, recipe)
        prelu_int8_form(model.graph, recipe)
        drop_unused_initializers(model.graph)
    return model, recipe
