"""Expert-parallel load balancing: a drop-in for DeepSeek's eplb.

  from tandem.eplb import rebalance_experts
  phy2log, log2phy, logcnt = rebalance_experts(weight, 288, 8, 4, 32)

`rebalance_experts` has the reference's signature and results (github.com/
deepseek-ai/EPLB, eplb.py): `weight` [layers, experts] loads (a torch
tensor, a NumPy array or nested lists; integer loads are cast to float32
as the reference's weight.float() does), and three int64 arrays in the
input's kind (tensors, NumPy arrays, nested lists): phy2log [layers,
num_replicas] (the expert in each slot), log2phy [layers, experts, max
replicas] (each expert's slots, -1 padded) and logcnt [layers, experts]. The default mode, "reference", gives the reference's bits,
ties included; "stable" breaks ties by index; "refined" searches each layer
from the reference plan and never ends with a higher max GPU load. The C++
solve runs without the GIL.
"""

import sys

import numpy as np

from tandem import _tandem
from tandem._args import integer as _int
from tandem._args import real as _real
from tandem._args import string as _string

__all__ = ["rebalance_experts", "Rebalanced", "metrics", "LoadRecorder"]


def _torch():
    """torch if the program imported it (a tensor cannot exist otherwise)."""
    return sys.modules.get("torch")


def _is_tensor(x):
    torch = _torch()
    return torch is not None and isinstance(x, torch.Tensor)


def _array(x, name):
    """A NumPy view of a tensor or array, or an array of a nested list."""
    if _is_tensor(x):
        t = x.detach().cpu()
        if t.dtype == _torch().bfloat16:
            t = t.float()  # NumPy has no bfloat16
        return t.numpy()
    if isinstance(x, np.ndarray):
        return x
    try:
        return np.asarray(x)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{name}: expected an array, a tensor or nested lists ({e})") from None


def _weights(weight):
    """int64 or float32, C-contiguous, as the solver reads them."""
    w = _array(weight, "weight")
    if w.dtype == np.int64 or w.dtype == np.float32:
        return np.ascontiguousarray(w)
    if w.dtype.kind in "iu":
        return np.ascontiguousarray(w, dtype=np.int64)
    if w.dtype.kind == "f":
        return np.ascontiguousarray(w, dtype=np.float32)  # the reference's weight.float()
    raise ValueError(f"weight: expected integer or floating-point loads, got dtype {w.dtype}")


def _phy2log(x, name):
    a = _array(x, name)
    if a.dtype.kind not in "iu":
        raise ValueError(f"{name}: expected integer expert ids, got dtype {a.dtype}")
    return np.ascontiguousarray(a, dtype=np.int64)


class Rebalanced(tuple):
    """(phy2log, log2phy, logcnt), as the reference returns; after a
    migration-aware solve also moved_per_layer (slots whose expert changed),
    moved_replicas and moved_bytes (moved_replicas * expert_bytes), else None."""

    moved_per_layer = moved_replicas = moved_bytes = None

    phy2log = property(lambda self: self[0])
    log2phy = property(lambda self: self[1])
    logcnt = property(lambda self: self[2])


def _like(weight, arrays):
    """The results in the input's kind: tensors, NumPy arrays or nested lists."""
    if _is_tensor(weight):
        torch = _torch()
        return tuple(torch.from_numpy(a) for a in arrays)
    if isinstance(weight, np.ndarray):
        return tuple(arrays)
    return tuple(a.tolist() for a in arrays)


def _speeds(gpu_speed):
    if gpu_speed is None:
        return []
    speeds = _array(gpu_speed, "gpu_speed")
    if speeds.ndim != 1 or speeds.dtype.kind not in "iuf":
        raise ValueError(f"gpu_speed: expected a list of numbers, got {gpu_speed!r}")
    return [float(v) for v in speeds]  # the solver names a speed that is not finite and > 0


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus, *, mode="reference",
                      no_duplicates=False, cross_node_replicas=False, gpu_speed=None,
                      previous_phy2log=None, expert_bytes=0, tolerance=0.01):
    """Places `num_replicas` slots per layer on `num_gpus` GPUs in `num_nodes` nodes.

    Returns (phy2log, log2phy, logcnt) as the reference does (a Rebalanced
    tuple: also .phy2log, ... and, after a migration-aware solve, the moves).
    Keywords:
      mode: "reference" (default), "stable" or "refined".
      no_duplicates: no GPU holds two replicas of one expert.
      cross_node_replicas: "refined" may put extra replicas on other nodes.
      gpu_speed: relative speed per GPU (num_gpus values > 0); the objective
        becomes max load / speed.
      previous_phy2log: the placement in service [layers, num_replicas]:
        migration-aware, moving as few slots as possible while each layer's
        balancedness stays within `tolerance` of a fresh solve; the result's
        moved_bytes counts `expert_bytes` per moved replica.
    Raises ValueError naming the bad value (shapes, NaN or negative loads,
    counts the reference rejects).
    """
    w = _weights(weight)
    previous = None if previous_phy2log is None else _phy2log(previous_phy2log, "previous_phy2log")
    out = _tandem.rebalance(w, _int(num_replicas, "num_replicas"), _int(num_groups, "num_groups"),
                            _int(num_nodes, "num_nodes"), _int(num_gpus, "num_gpus"), _string(mode, "mode"),
                            bool(no_duplicates), bool(cross_node_replicas), _speeds(gpu_speed), previous,
                            _int(expert_bytes, "expert_bytes", 64), _real(tolerance, "tolerance"))
    result = Rebalanced(_like(weight, (out["phy2log"], out["log2phy"], out["logcnt"])))
    if previous is not None:
        result.moved_per_layer = out["moved_per_layer"]
        result.moved_replicas = out["moved_replicas"]
        result.moved_bytes = out["moved_bytes"]
    return result


def metrics(weight, phy2log, num_gpus, *, gpu_speed=None, previous_phy2log=None, expert_bytes=0):
    """Quality of a placement under `weight`, in float64 (each expert's load split evenly).

    A dict of NumPy values: balancedness (mean / max GPU load, per layer),
    balancedness_aggregate (sum of means / sum of maxima), max_gpu_load,
    lower_bound (total / GPUs), imbalance_ratio, imbalance_ratio_aggregate,
    gpus_holding_duplicate_replicas; with gpu_speed, max_load_per_speed; with
    previous_phy2log, moved_per_layer (slots whose expert changed),
    moved_replicas and moved_bytes (moved_replicas * expert_bytes).
    """
    slots = _phy2log(phy2log, "phy2log")
    out = _tandem.metrics(_weights(weight), slots, _int(num_gpus, "num_gpus"), _speeds(gpu_speed))
    if previous_phy2log is not None:
        previous = _phy2log(previous_phy2log, "previous_phy2log")
        if previous.shape != slots.shape:
            raise ValueError(f"previous_phy2log: expected shape {slots.shape} (as phy2log), got {previous.shape}")
        if _int(expert_bytes, "expert_bytes", 64) < 0:
            raise ValueError(f"expert_bytes: expected >= 0, got {expert_bytes}")
        out["moved_per_layer"] = (previous != slots).sum(axis=1)
        out["moved_replicas"] = int(out["moved_per_layer"].sum())
        out["moved_bytes"] = out["moved_replicas"] * int(expert_bytes)
    return out


class LoadRecorder:
    """Per-layer, per-expert token counts of a running MoE model.

    Counts of the current step accumulate until end_step(); then the step
    enters a window of the last `window_steps` steps and a moving average
    (weight `ema_alpha` for the newest step). record() and record_routed()
    read a C-contiguous int array (or CPU tensor) in place, without copying,
    and refuse a non-contiguous one with ValueError; calls for different
    layers may run concurrently from several threads.

      r = LoadRecorder(58, 256)
      r.record_routed(layer, topk_ids)      # int32 or int64, any shape
      r.end_step()
      phy2log, _, _ = rebalance_experts(r.window(), 288, 8, 4, 32)
    """

    def __init__(self, num_layers, num_experts, *, window_steps=1000, ema_alpha=0.01):
        self._r = _tandem.LoadRecorder(_int(num_layers, "num_layers"), _int(num_experts, "num_experts"),
                                       _int(window_steps, "window_steps"), _real(ema_alpha, "ema_alpha"))

    @staticmethod
    def _view(x, name):
        if _is_tensor(x):
            torch = _torch()
            if x.device.type != "cpu":
                raise ValueError(f"{name}: expected a CPU tensor, got one on {x.device}")
            if x.dtype not in (torch.int32, torch.int64):
                raise ValueError(f"{name}: expected an int32 or int64 tensor, got {x.dtype}")
            return x.detach().numpy()
        if isinstance(x, np.ndarray):
            return x
        raise ValueError(f"{name}: expected a NumPy array or a torch tensor, got {type(x).__name__}")

    def record(self, layer, counts):
        """Adds `counts` (num_experts int64 values >= 0) to `layer`."""
        self._r.record(_int(layer, "layer"), self._view(counts, "counts"))

    def record_routed(self, layer, expert_ids):
        """Adds one token per entry of `expert_ids` (int32 or int64) to `layer`."""
        self._r.record_routed(_int(layer, "layer"), self._view(expert_ids, "expert_ids"))

    def end_step(self):
        self._r.end_step()

    def snapshot(self):
        """dict: steps, window_steps, window (int64 sums) and ema (float32), [layers, experts]."""
        return self._r.snapshot()

    def window(self):
        """The window's sums, [layers, experts] int64: input for rebalance_experts."""
        return self._r.snapshot()["window"]
