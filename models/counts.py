"""Parameters and MACs of every registered model at its default input size, as spec data: what
``mobile-export list`` prints without building 40 models (10 s → under 1 s). The zoo test
(``tests/models/test_zoo.py``) rebuilds each model and fails when a row differs from its count, so
the table cannot drift; ``python tools/make_counts.py`` rewrites it after a model changes.
"""
from __future__ import annotations

# name: (parameters, multiply-accumulates at the spec's input size)
COUNTS: dict[str, tuple[int, int]] = {
    "efficientnet_b0": (5288548, 385814752),
    "efficientnet_lite0": (4652008, 385187552),
    "espnetv2_s1_0": (1670072, 86744404),
    "fbnet_a": (4321464, 249921848),
    "fbnet_b": (4813048, 296614728),
    "fbnet_c": (5572200, 384960160),
    "ghostnet_1_0": (5182508, 141150512),
    "mobilenet_v1": (4231976, 568740352),
    "mobilenet_v1_x0_25": (470072, 41030272),
    "mobilenet_v1_x0_5": (1331592, 149497088),
    "mobilenet_v1_x0_75": (2585560, 325400448),
    "mobilenet_v2": (3504872, 300774272),
    "mobilenet_v2_x0_35": (1677128, 59285808),
    "mobilenet_v2_x0_5": (1968680, 97131840),
    "mobilenet_v2_x0_75": (2636424, 209069792),
    "mobilenet_v2_x1_4": (6108776, 582195824),
    "mobilenet_v3_large": (5483032, 216589760),
    "mobilenet_v3_small": (2542856, 56510400),
    "shufflenet_v1_g1": (1531936, 143078976),
    "shufflenet_v1_g2": (1733848, 140836512),
    "shufflenet_v1_g3": (1865728, 137460672),
    "shufflenet_v1_g4": (1968344, 134339776),
    "shufflenet_v1_g8": (2434768, 138365952),
    "shufflenet_v1_x0_5_g3": (718324, 37589856),
    "shufflenet_v2_x0_5": (1366792, 40476448),
    "shufflenet_v2_x1_0": (2278604, 144907992),
    "shufflenet_v2_x1_5": (3503624, 295759392),
    "shufflenet_v2_x2_0": (7393996, 583253464),
    "squeezenet1_0": (1248424, 818924576),
    "squeezenet1_0_complex_bypass": (1589672, 1165298720),
    "squeezenet1_0_simple_bypass": (1248424, 818924576),
    "squeezenet1_1": (1235496, 349151936),
    "squeezenext23_x1_0": (717280, 268976832),
    "squeezenext23_x2_0": (2361728, 719066816),
    "squeezenext23v5_x1_0": (930016, 222046464),
    "squeezenext23v5_x2_0": (3222912, 697960192),
}

