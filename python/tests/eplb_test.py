"""tandem.eplb against DeepSeek's reference vectors, independent NumPy
recomputations of the metrics and the recorder, bad inputs, and the GIL."""

import ctypes
import json
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch

from tandem import eplb, schedule
from tandem.eplb import LoadRecorder, rebalance_experts


def _runfile(path):
    return os.path.join(os.environ.get("TEST_SRCDIR", ".."), "tandem", path)


with open(_runfile("balance/testdata/eplb_vectors.json")) as f:
    VECTORS = json.load(f)
README = {"weight": [[90, 132, 40, 61, 104, 165, 39, 4, 73, 56, 183, 86],
                     [20, 107, 104, 64, 19, 197, 187, 157, 172, 86, 16, 27]],
          "num_replicas": 16, "num_groups": 4, "num_nodes": 2, "num_gpus": 8}


def _args(inputs):
    dtype = np.float32 if inputs.get("weight_dtype") == "float32" else np.int64
    w = np.array(inputs["weight"], dtype=dtype)
    return w, inputs["num_replicas"], inputs["num_groups"], inputs["num_nodes"], inputs["num_gpus"]


def _gpu_loads(weight, phy2log, logcnt, num_gpus):
    """[layers, gpus] loads, each expert's load split evenly over its replicas (float64)."""
    w = np.asarray(weight, dtype=np.float64)
    per_slot = np.take_along_axis(w / logcnt, phy2log, axis=1)
    return per_slot.reshape(w.shape[0], num_gpus, -1).sum(axis=2)


@pytest.mark.parametrize("case", VECTORS["cases"], ids=lambda c: c["name"])
def test_reference_vectors_exact(case):
    out = rebalance_experts(*_args(case["inputs"]))
    for name, got in zip(("phy2log", "log2phy", "logcnt"), out):
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got, np.array(case["outputs"][name]), err_msg=name)


@pytest.mark.parametrize("case", VECTORS["cases"], ids=lambda c: c["name"])
def test_stable_mode_matches_stable_sort_variant(case):
    out = dict(zip(("phy2log", "log2phy", "logcnt"), rebalance_experts(*_args(case["inputs"]), mode="stable")))
    variant = case["stable_sort_variant"]
    expected = dict(case["outputs"], **(variant.get("outputs", {}) if variant["differs"] else {}))
    for name in out:
        np.testing.assert_array_equal(out[name], np.array(expected[name]), err_msg=name)


def test_modes_differ_where_ties_meet():
    """Must-fail twin of the exact check: where the reference's unstable sort
    meets ties, the stable mode's plan is not the reference's."""
    cases = [c for c in VECTORS["cases"] if c["stable_sort_variant"]["differs"]]
    assert cases
    for case in cases:
        ref = dict(zip(("phy2log", "log2phy", "logcnt"), rebalance_experts(*_args(case["inputs"]))))
        stable = dict(zip(ref, rebalance_experts(*_args(case["inputs"]), mode="stable")))
        differing = case["stable_sort_variant"]["outputs"]
        assert any(not np.array_equal(ref[k], stable[k]) for k in differing), case["name"]


REJECTED_BECAUSE = {  # what the C++ message names, per case of the reference's asserts
    "replicas_not_multiple_of_gpus": "num_replicas",
    "gpus_not_multiple_of_nodes_hier": "num_gpus",
    "experts_not_multiple_of_groups": "num_groups",
    "replicas_less_than_experts_global": "num_replicas",
    "replicas_less_than_experts_hier": "num_replicas",
}


@pytest.mark.parametrize("case", VECTORS["invalid_cases"], ids=lambda c: c["name"])
def test_reference_rejections(case):
    w, r, g, n, gpus = _args(case["inputs"])
    if case["reference_result"] == "no error":
        phy2log, log2phy, logcnt = rebalance_experts(w, r, g, n, gpus)
        assert phy2log.shape == (w.shape[0], r)
        assert (logcnt.sum(axis=1) == r).all()
        assert eplb.metrics(w, phy2log, gpus)["balancedness_aggregate"] > 0
    else:
        with pytest.raises(ValueError, match=REJECTED_BECAUSE[case["name"]]):
            rebalance_experts(w, r, g, n, gpus)


def test_numpy_list_and_torch_inputs_agree_and_keep_their_kind():
    w = np.array(README["weight"], dtype=np.int64)
    args = (README["num_replicas"], README["num_groups"], README["num_nodes"], README["num_gpus"])
    from_numpy = rebalance_experts(w, *args)
    from_list = rebalance_experts(README["weight"], *args)
    from_torch = rebalance_experts(torch.tensor(README["weight"]), *args)
    from_float = rebalance_experts(torch.tensor(README["weight"], dtype=torch.float64), *args)
    for a, b, t, f in zip(from_numpy, from_list, from_torch, from_float):
        assert isinstance(a, np.ndarray) and a.dtype == np.int64
        assert isinstance(b, list) and b == a.tolist()
        assert isinstance(t, torch.Tensor) and t.dtype == torch.int64
        np.testing.assert_array_equal(a, t.numpy())
        np.testing.assert_array_equal(a, f.numpy())
    # A non-contiguous view is read as its values.
    wide = np.repeat(w, 2, axis=1)[:, ::2]
    for a, b in zip(from_numpy, rebalance_experts(wide, *args)):
        np.testing.assert_array_equal(a, b)


def test_imports_and_solves_without_torch():
    code = ("import sys; sys.modules['torch'] = None\n"
            "from tandem.eplb import rebalance_experts\n"
            "print(rebalance_experts([[3, 1, 2, 2]], 4, 1, 1, 2)[2])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[[1, 1, 1, 1]]"


def test_metrics_match_a_numpy_recomputation():
    case = next(c for c in VECTORS["cases"] if c["name"] == "dsv3_prefill_n4_g32_r288")
    w, r, g, n, gpus = _args(case["inputs"])
    phy2log, _, logcnt = rebalance_experts(w, r, g, n, gpus)
    m = eplb.metrics(w, phy2log, gpus)
    loads = _gpu_loads(w.astype(np.float32), phy2log, logcnt, gpus)
    np.testing.assert_allclose(m["max_gpu_load"], loads.max(axis=1), rtol=1e-12)
    np.testing.assert_allclose(m["balancedness"], loads.mean(axis=1) / loads.max(axis=1), rtol=1e-12)
    assert m["balancedness_aggregate"] == pytest.approx(loads.mean(axis=1).sum() / loads.max(axis=1).sum())
    # The vectors' metrics were computed in float32.
    np.testing.assert_allclose(m["balancedness"], case["metrics"]["balancedness_per_layer"], rtol=1e-6)


def test_refined_no_duplicates_and_speeds_keep_their_promises():
    case = next(c for c in VECTORS["cases"] if c["name"] == "dsv3_full_58_layers")
    w, r, g, n, gpus = _args(case["inputs"])
    ref = eplb.metrics(w, rebalance_experts(w, r, g, n, gpus)[0], gpus)
    refined = eplb.metrics(w, rebalance_experts(w, r, g, n, gpus, mode="refined")[0], gpus)
    assert np.all(refined["max_gpu_load"] <= ref["max_gpu_load"])
    assert refined["max_gpu_load"].sum() < ref["max_gpu_load"].sum()
    no_dup = eplb.metrics(w, rebalance_experts(w, r, g, n, gpus, no_duplicates=True)[0], gpus)
    assert no_dup["gpus_holding_duplicate_replicas"] == 0
    speed = [1.0] * gpus
    speed[3] = 0.5
    blind = eplb.metrics(w, rebalance_experts(w, r, g, n, gpus)[0], gpus, gpu_speed=speed)
    aware = eplb.metrics(w, rebalance_experts(w, r, g, n, gpus, gpu_speed=speed)[0], gpus, gpu_speed=speed)
    assert np.all(aware["max_load_per_speed"] <= blind["max_load_per_speed"])
    assert aware["max_load_per_speed"].sum() < 0.9 * blind["max_load_per_speed"].sum()


def test_migration_aware_moves_little_and_counts_bytes():
    case = next(c for c in VECTORS["cases"] if c["name"] == "dsv3_full_58_layers")
    w, r, g, n, gpus = _args(case["inputs"])
    old, _, _ = rebalance_experts(w, r, g, n, gpus)
    # The same loads: nothing needs to move.
    same, _, _ = rebalance_experts(w, r, g, n, gpus, previous_phy2log=old, expert_bytes=1 << 20)
    assert eplb.metrics(w, same, gpus, previous_phy2log=old, expert_bytes=1 << 20)["moved_bytes"] == 0
    shifted = np.roll(w, 7, axis=1)  # every expert's load changes
    fresh, _, _ = rebalance_experts(shifted, r, g, n, gpus)
    result = rebalance_experts(shifted, r, g, n, gpus, previous_phy2log=old, expert_bytes=1 << 20)
    moved, _, _ = result
    m = eplb.metrics(shifted, moved, gpus, previous_phy2log=old, expert_bytes=1 << 20)
    f = eplb.metrics(shifted, fresh, gpus, previous_phy2log=old, expert_bytes=1 << 20)
    assert m["moved_replicas"] == int((moved != old).sum()) == result.moved_replicas
    assert m["moved_bytes"] == m["moved_replicas"] << 20 == result.moved_bytes
    np.testing.assert_array_equal(result.moved_per_layer, (moved != old).sum(axis=1))
    assert rebalance_experts(shifted, r, g, n, gpus).moved_bytes is None
    assert 0 < m["moved_replicas"] < f["moved_replicas"]
    assert np.all(m["balancedness"] >= f["balancedness"] - 0.01 - 1e-12)


@pytest.mark.parametrize("bad, message", [
    (lambda w: (w[0], 16, 4, 2, 8), "weight: expected a 2-D [layers, experts] array, got shape (12)"),
    (lambda w: (w[None], 16, 4, 2, 8), "weight: expected a 2-D [layers, experts] array, got shape (1, 2, 12)"),
    (lambda w: (np.where(np.arange(12) == 3, np.nan, w.astype(np.float32)), 16, 4, 2, 8),
     "weights[0][3]: expected a finite load >= 0, got nan"),
    (lambda w: (-w, 16, 4, 2, 8), "weights[0][0]: expected a finite load >= 0, got -90"),
    (lambda w: (w, 16.5, 4, 2, 8), "num_replicas: expected an integer, got 16.5"),
    (lambda w: (w, "16", 4, 2, 8), "num_replicas: expected an integer, got '16'"),
    (lambda w: (w, 1 << 40, 4, 2, 8), "num_replicas: expected a 32-bit integer"),
    (lambda w: (w, 15, 4, 2, 8), "num_replicas"),
    (lambda w: (w.astype(bool), 16, 4, 2, 8), "weight: expected integer or floating-point loads, got dtype bool"),
    (lambda w: ([[1, 2], [3]], 16, 4, 2, 8), "weight: expected an array"),
])
def test_bad_inputs_raise_value_error_with_the_cpp_text(bad, message):
    w = np.array(README["weight"], dtype=np.int64)
    with pytest.raises(ValueError) as e:
        rebalance_experts(*bad(w))
    assert message in str(e.value)


@pytest.mark.parametrize("call, message", [
    (lambda w: rebalance_experts(w, 16, 4, 2, 8, mode="best"), "mode: expected reference, stable or refined"),
    (lambda w: rebalance_experts(w, 16, 4, 2, 8, mode=None), "mode: expected a string, got None"),
    (lambda w: rebalance_experts(w, 16, 4, 2, 8, tolerance="x"), "tolerance: expected a number, got 'x'"),
    (lambda w: rebalance_experts(w, 16, 4, 2, 8, gpu_speed=[1.0] * 7), "gpu_speed"),
    (lambda w: rebalance_experts(w, 16, 4, 2, 8, gpu_speed=[1.0] * 7 + [float("nan")]),
     "gpu_speed[7]: expected a finite speed > 0, got nan"),
    (lambda w: rebalance_experts(w, 16, 4, 2, 8, gpu_speed=["fast"] * 8), "gpu_speed: expected a list of numbers"),
    (lambda w: rebalance_experts(w, 16, 4, 2, 8, previous_phy2log=np.zeros((16, 2), dtype=np.int64)),
     "previous_phy2log: expected shape (2, 16), got (16, 2)"),
    (lambda w: rebalance_experts(w, 16, 4, 2, 8, previous_phy2log=rebalance_experts(w[:, ::-1], 16, 4, 2, 8)[0],
                                 expert_bytes=1 << 62), "moved replicas x 4611686018427387904 bytes overflows"),
    (lambda w: eplb.metrics(w, rebalance_experts(w, 16, 4, 2, 8)[0], 8, gpu_speed=[1.0] * 4),
     "gpu_speed: expected 8 values (one per GPU), got 4"),
    (lambda w: LoadRecorder(1 << 20, 1 << 10), "num_layers x num_experts: expected at most 16777216"),
    (lambda w: LoadRecorder(58, 256, window_steps=1 << 20), "window_steps: expected at most 72315"),
    (lambda w: LoadRecorder(2, 8, ema_alpha=None), "ema_alpha: expected a number, got None"),
])
def test_bad_options_raise_value_error(call, message):
    w = np.array(README["weight"])
    with pytest.raises(ValueError) as e:
        call(w)
    assert message in str(e.value)


def test_load_recorder_matches_numpy_sums():
    rng = np.random.default_rng(7)
    r = LoadRecorder(3, 16, window_steps=2, ema_alpha=0.5)
    steps = []
    for _ in range(3):
        counts = np.zeros((3, 16), dtype=np.int64)
        for layer in range(3):
            ids = torch.from_numpy(rng.integers(0, 16, size=(32, 4)))  # top-4 of 32 tokens, int64
            r.record_routed(layer, ids)
            counts[layer] += np.bincount(ids.numpy().ravel(), minlength=16)
            extra = rng.integers(0, 5, size=16).astype(np.int64)
            r.record(layer, extra)
            counts[layer] += extra
            ids32 = rng.integers(0, 16, size=10).astype(np.int32)
            r.record_routed(layer, ids32)
            counts[layer] += np.bincount(ids32, minlength=16)
        r.end_step()
        steps.append(counts)
    snap = r.snapshot()
    assert snap["steps"] == 3 and snap["window_steps"] == 2
    np.testing.assert_array_equal(r.window(), steps[1] + steps[2])
    ema = steps[0].astype(np.float64)
    for s in steps[1:]:
        ema = 0.5 * s + 0.5 * ema
    np.testing.assert_allclose(snap["ema"], ema, rtol=1e-6)


def test_load_recorder_refuses_copies_and_bad_counts():
    r = LoadRecorder(2, 8)
    wide = np.zeros(16, dtype=np.int64)
    with pytest.raises(ValueError, match="counts: expected a C-contiguous array"):
        r.record(0, wide[::2])
    with pytest.raises(ValueError, match="counts: expected int64, got dtype float64"):
        r.record(0, np.ones(8))
    with pytest.raises(ValueError, match="expected an expert in"):
        r.record_routed(1, np.array([0, 8], dtype=np.int32))
    with pytest.raises(ValueError, match="expected a NumPy array or a torch tensor, got list"):
        r.record(0, [1] * 8)
    with pytest.raises(ValueError, match="layer"):
        r.record(2, np.ones(8, dtype=np.int64))
    with pytest.raises(ValueError, match="expected an int32 or int64 tensor, got torch.bfloat16"):
        r.record_routed(0, torch.zeros(4, dtype=torch.bfloat16))
    # Repeated ids count against the per-step limit too (2^31 - 1 per expert).
    r.record(0, np.array([2**31 - 2] + [0] * 7, dtype=np.int64))
    with pytest.raises(ValueError, match="counts\\[0\\]: expected a count in \\[0, 1\\] for this step, got 2"):
        r.record_routed(0, np.array([0, 0], dtype=np.int64))
    r.record_routed(0, np.array([0], dtype=np.int32))
    r.end_step()
    assert r.window()[0, 0] == 2**31 - 1
    assert r.window().sum() == 2**31 - 1  # nothing was added by the refused calls


def _progress(call, spin_seconds=0.2):
    """The fraction of its solo pace a counting Python thread keeps while `call` runs."""
    count, stop = [0], threading.Event()

    def spin():
        while not stop.is_set():
            count[0] += 1

    t = threading.Thread(target=spin)
    t.start()
    start, c0 = time.perf_counter(), count[0]
    time.sleep(spin_seconds)  # the main thread waits without the GIL: the solo pace
    solo = (count[0] - c0) / (time.perf_counter() - start)
    start, c0 = time.perf_counter(), count[0]
    call()
    during = (count[0] - c0) / (time.perf_counter() - start)
    stop.set()
    t.join()
    return during / solo


def _long_solve_args():
    """Loads whose refined solve takes about half a second here."""
    rng = np.random.default_rng(3)
    layers = 8
    while True:
        w = rng.zipf(1.3, size=(layers, 256)).astype(np.int64).clip(max=10**6)
        start = time.perf_counter()
        rebalance_experts(w, 288, 8, 4, 32, mode="refined")
        if time.perf_counter() - start > 0.5 or layers >= 4096:
            return w
        layers *= 2


def test_solves_release_the_gil():
    w = _long_solve_args()
    kept = _progress(lambda: rebalance_experts(w, 288, 8, 4, 32, mode="refined"))
    assert kept > 0.1, kept


def test_schedule_calls_release_the_gil():
    kept = _progress(lambda: schedule.compare(64, 2048, "F=1,B=2,I=1,W=1"))
    assert kept > 0.1, kept


def test_a_call_holding_the_gil_is_noticed():
    """Must-fail twin of the above: ctypes.PyDLL keeps the GIL during usleep."""
    held = _progress(lambda: ctypes.PyDLL(None).usleep(500000))
    released = _progress(lambda: ctypes.CDLL(None).usleep(500000))
    assert held < 0.1 < released, (held, released)


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q", "-p", "no:cacheprovider"]))
