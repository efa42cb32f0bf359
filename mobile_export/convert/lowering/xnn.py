"""Split and concatenation shaped for XNNPACK: its SPLIT takes at most 4 outputs and its
CONCATENATION at most 4 inputs, so wider ones are built as a tree of smaller ones (still one
partition; a single 8-way SPLIT would fall out of the delegate)."""
from __future__ import annotations

import tensorflow as tf

MAX_FAN = 4


def split(t, n: int, axis: int) -> list:
    """``n`` equal parts of ``t`` along ``axis``, every SPLIT op having ≤ 4 outputs."""
    if n <= MAX_FAN:
        return list(tf.split(t, n, axis=axis)) if n > 1 else [t]
    for d in (4, 3, 2):
        if n % d == 0:
            return [p for part in tf.split(t, d, axis=axis) for p in split(part, n // d, axis)]
    return list(tf.split(t, n, axis=axis))  # a prime > 4: one wide SPLIT (leaves the delegate)


def concat(ts: list, axis: int):
    """Concatenate ``ts`` along ``axis`` with CONCATENATION ops of ≤ 4 inputs each."""
    ts = list(ts)
    if len(ts) == 1:
        return ts[0]
    while len(ts) > MAX_FAN:
        ts = [tf.concat(ts[i:i + MAX_FAN], axis=axis) if len(ts[i:i + MAX_FAN]) > 1 else ts[i]
              for i in range(0, len(ts), MAX_FAN)]
    return tf.concat(ts, axis=axis)
