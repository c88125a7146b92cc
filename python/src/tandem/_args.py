"""Argument checks shared by the tandem modules: a wrong type is a ValueError
naming the argument, as bad values are, never a TypeError from the binding."""

import math
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


def real(x, name):
    """A finite number."""
    if isinstance(x, (str, bytes)):
        raise ValueError(f"{name}: expected a number, got {x!r}")
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a number, got {x!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{name}: expected a finite number, got {v}")
    return v


def string(x, name):
    if not isinstance(x, str):
        raise ValueError(f"{name}: expected a string, got {x!r}")
    return x
