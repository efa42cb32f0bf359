"""ShuffleNetV2's concat → channel shuffle → split, with half of the shuffle's data movement.

In a ShuffleNetV2 unit the identity half ``a`` and the branch output ``b`` (n channels each) are
concatenated, shuffled with 2 groups and split in halves for the next unit: ``y1`` (its identity
half) and ``y2`` (its branch input). Element-wise, ``y1 = interleave(a[:n/2], b[:n/2])`` and
``y2 = interleave(a[n/2:], b[n/2:])``. ``y2`` only feeds plain convolutions, which read any channel
order once their weights' input columns are permuted: it becomes ``concat(a[n/2:], b[n/2:])``, no
transpose. ``y1`` keeps its exact order (the next unit's shuffle depends on it) through a shuffle of
n channels instead of 2n. Per unit, one transpose of n channels disappears; the copies (splits and
concatenations) move as many elements as before. (Computing ``b``'s halves with two convolutions of
half the outputs instead of splitting it was measured: int8 −0.15M, fp32 +1.1M on cortex-a76 — not kept.)
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from mobile_export.convert.graph import DOMAIN, attrs, channel_counts, consumers_of, initializers, producers_of

def _match(sh, graph, cons, prods, inits, channels, outputs):
    """(concat, split, n) when ``sh`` is a 2-group shuffle between a two-input channel Concat (read
    by nothing else) and an equal two-way channel Split whose second half feeds only plain convs."""
    if sh.op_type != "ChannelShuffle" or int(attrs(sh)["groups"]) != 2:
        return None
    cat, users = prods.get(sh.input[0]), cons.get(sh.output[0], [])
    if (cat is None or cat.op_type != "Concat" or len(cat.input) != 2 or int(attrs(cat)["axis"]) not in (1, -3)
            or len(cons[cat.output[0]]) != 1 or len(users) != 1 or sh.output[0] in outputs):
        return None
    split = users[0]
    if (split.op_type != "Split" or len(split.output) != 2 or int(attrs(split).get("axis", 0)) not in (1, -3)
            or (len(split.input) > 1 and split.input[1]) or "split" in attrs(split)):
        return None
    n = channels.get(cat.input[0])
    if n is None or n != channels.get(cat.input[1]) or n % 2 or split.output[1] in outputs:
        return None
    convs = cons.get(split.output[1], [])
    if not convs or any(u.op_type != "Conv" or int(attrs(u).get("group", 1)) != 1 or u.input[0] != split.output[1]
                        or u.input[1] not in inits for u in convs):
        return None
    return cat, split, n


def _unit(sh, cat, split, n: int, graph, inits) -> list[onnx.NodeProto]:
    """The replacement nodes; rewires the convs reading the second half to its physical order."""
    a, b = cat.input
    base = sh.name or sh.output[0]
    a_lo, a_hi, b_lo, b_hi, lo = (f"{base}/{s}" for s in ("a_lo", "a_hi", "b_lo", "b_hi", "lo"))
    y1, y2 = split.output
    y2_phys = f"{y2}__routed"  # a new name: its channel order differs from the reference's y2
    nodes = [
        helper.make_node("Split", [a], [a_lo, a_hi], name=f"{base}/split_a", axis=1),
        helper.make_node("Split", [b], [b_lo, b_hi], name=f"{base}/split_b", axis=1),
        helper.make_node("Concat", [a_lo, b_lo], [lo], name=f"{base}/concat_lo", axis=1),
        helper.make_node("ChannelShuffle", [lo], [y1], name=f"{base}/shuffle_lo", domain=DOMAIN, groups=2),
        helper.make_node("Concat", [a_hi, b_hi], [y2_phys], name=f"{base}/concat_hi", axis=1),
    ]
    j = np.arange(n)
    phys = (j % 2) * (n // 2) + j // 2  # y2[j] = interleave(a_hi, b_hi)[j] sits at y2_phys[phys[j]]
    for u in (c for c in list(graph.node) if c.input and c.input[0] == y2):
        w = numpy_helper.to_array(inits[u.input[1]])
        w2 = np.empty_like(w)
        w2[:, phys] = w
        name = f"{u.input[1]}__routed"
        graph.initializer.append(numpy_helper.from_array(w2, name))
        inits[name] = graph.initializer[-1]
        u.input[0], u.input[1] = y2_phys, name
    return nodes


def route_shuffle_split(graph: onnx.GraphProto, recipe: list[str]) -> None:
    """Rewrite every matching concat → shuffle → split (module doc), in place."""
    inits, outputs = initializers(graph), {o.name for o in graph.output}
    cons, prods, channels = consumers_of(graph), producers_of(graph), channel_counts(graph)
    replace: dict[int, list[onnx.NodeProto]] = {}
    drop: set[int] = set()
    for sh in list(graph.node):
        m = _match(sh, graph, cons, prods, inits, channels, outputs)
        if m is None:
            continue
        cat, split, n = m
        replace[id(cat)] = _unit(sh, cat, split, n, graph, inits)
        drop |= {id(sh), id(split)}
        recipe.append(f"{sh.name}: shuffle of {2 * n} channels routed: the branch half feeds "
                      f"{', '.join(u.name for u in cons[split.output[1]])} with permuted weights, "
                      f"only the identity half ({n} channels) is shuffled")
    if not replace:
        return
    nodes = []
    for node in graph.node:
        if id(node) in replace:
            nodes += replace[id(node)]
        elif id(node) not in drop:
            nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
