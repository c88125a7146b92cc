"""Argument checks shared by the tandem modules."""

import operator


def integer(x, name, bits=32):
    """An integer argument (int, NumPy or 0-d tensor integer) that fits `bits`; ValueError for 2.5 or "8"."""
    try:
        v = operator.index(x)
    except TypeError:
        raise ValueError(f"{name}: expected an integer, got {x!r}") from None
    if not -(1 << (bits - 1)) <= v < 1 << (bits - 1):
        raise ValueError(f"{name}: expected a {bits}-bit integer, got {v}")
    return v
