"""tandem.schedule against PyTorch's stored pipeline orders, closed forms of
the simulator, format round trips and bad inputs."""

import json
import os
import sys

import pytest

from tandem import schedule, schedule_pb2


def _runfile(path):
    return os.path.join(os.environ.get("TEST_SRCDIR", ".."), "tandem", path)


with open(_runfile("schedule/testdata/torch_pipelining_orders.json")) as f:
    TORCH_ORDERS = json.load(f)
TORCH_NAMES = {"Interleaved1F1B": "interleaved1f1b", "LoopedBFS": "loopedbfs", "InterleavedZeroBubble": "zb1p",
               "ZBVZeroBubble": "zbv", "DualPipeV": "dualpipev"}


def _case(key):
    name, p, v, n = key.split()
    return TORCH_NAMES[name], int(p[2:]), int(v[2:]), int(n[2:])


def _without_idle(order):
    return {int(rank): [a for a in actions if a] for rank, actions in order.items()}


@pytest.mark.parametrize("key", sorted(TORCH_ORDERS))
def test_generators_match_pytorch_orders(key):
    kind, p, v, n = _case(key)
    s = schedule.generate(kind, p, n, chunks=v)
    assert s.orders() == _without_idle(TORCH_ORDERS[key])


@pytest.mark.parametrize("key", sorted(TORCH_ORDERS))
def test_pytorch_orders_load_validate_and_round_trip(key):
    kind, p, v, n = _case(key)
    s = schedule.from_actions(TORCH_ORDERS[key])  # with PyTorch's "" idle steps
    schedule.validate(s)
    assert (s.ranks, s.stages, s.microbatches) == (p, p * v, n)
    csv = s.to_torch_csv()
    assert csv.splitlines()[0].split(",") == _without_idle(TORCH_ORDERS[key])[0]
    assert schedule.from_torch_csv(csv).orders() == s.orders()


def test_a_changed_order_differs():
    """Must-fail twin: one swapped pair of actions is seen."""
    key = "Interleaved1F1B p=2 v=2 n=4"
    order = _without_idle(TORCH_ORDERS[key])
    order[0][0], order[0][1] = order[0][1], order[0][0]
    assert schedule.generate("interleaved1f1b", 2, 4, chunks=2).orders() != order


def test_lowered_schedule_has_pytorch_comm_actions():
    s = schedule.generate("1f1b", 2, 2, with_comm=True)
    assert s.lowered
    assert s.lower().orders() == s.orders() == schedule.generate("1f1b", 2, 2).lower().orders()
    assert s.actions(0) == ["0F0", "0SEND_F0", "0F1", "0SEND_F1", "0RECV_B0", "0B0", "0RECV_B1", "0B1"]
    assert schedule.from_torch_csv(s.to_torch_csv()).orders() == s.orders()


def test_overlapped_f_and_b_strings():
    s = schedule.generate("dualpipev", 2, 8)
    assert (s.directions, schedule.generate("dualpipe", 2, 8).directions) == (1, 2)
    fb = [a for a in s.actions(0) if a.endswith("OVERLAP_F_B")]
    assert fb and all(a.startswith("(") and ";" in a for a in fb)


@pytest.mark.parametrize("kind, p, n", [("gpipe", 4, 8), ("1f1b", 4, 8), ("1f1b", 3, 5), ("gpipe", 1, 3)])
def test_simulated_makespan_has_its_closed_form(kind, p, n):
    # F=1, B=2, no transfer time: (n + p - 1) * (F + B), bubble (p - 1) * (F + B).
    r = schedule.simulate(schedule.generate(kind, p, n), "F=1,B=2")
    assert r["makespan"] == (n + p - 1) * 3
    assert r["bubble"] == (p - 1) * 3
    assert [x["rank"] for x in r["per_rank"]] == list(range(p))
    assert all(x["busy"] == n * 3 for x in r["per_rank"])


def test_phase_costs():
    s = schedule.generate("1f1b", 1, 1)
    # Compute-only phases give the scalar costs.
    plain = {"f": [[("compute", 1.0)]], "b": [[("compute", 2.0)]]}
    assert schedule.simulate(s, "F=5,B=5", phases=plain)["makespan"] == 3.0
    # A 4 us exchange the forward waits for, with 1 us of compute to hide behind.
    hidden = {"f": [[("compute", 1.0), ("post_timed", 0, 4.0, "dispatch"), ("compute", 1.0), ("wait", 0),
                     ("compute", 1.0)]], "b": [[("compute", 2.0)]]}
    assert schedule.simulate(s, phases=hidden)["makespan"] == 1 + 4 + 1 + 2
    link = dict(hidden, f=[[("compute", 1.0), ("post", 0, 10**6), ("wait", 0)]], ep=2, ep_link="5:1")
    # latency 5 us + (ep - 1) * 1e6 bytes at 1 GB/s = 1000 us.
    assert schedule.simulate(s, phases=link)["makespan"] == pytest.approx(1 + 5 + 1000 + 2)
    with pytest.raises(ValueError, match=r"phases\['f'\]\[0\]\[0\]: expected a step"):
        schedule.simulate(s, phases={"f": [[("sleep", 1.0)]]})
    with pytest.raises(ValueError, match="exchange"):
        schedule.simulate(s, phases={"f": [[("wait", 0)]]})


def test_compare_render_and_proto():
    c = schedule.compare(4, 8, "F=1,B=2,I=1,W=1")
    kinds = {k["kind"]: k for k in c["kinds"]}
    assert set(kinds) == set(schedule.KINDS)
    assert kinds["1f1b"]["makespan"] == 33.0
    s = schedule.generate("zbv", 4, 8)
    assert schedule.render(s, "svg").startswith("<svg")
    assert len(schedule.render(s, "ascii").splitlines()) >= 4
    assert json.loads(schedule.render(s, "chrome"))
    p = s.to_proto()
    assert isinstance(p, schedule_pb2.Schedule)
    assert (p.ranks, p.stages, p.microbatches) == (4, 8, 8)
    assert sum(len(prog.actions) for prog in p.programs) == s.total_actions
    assert schedule.from_proto(p).orders() == s.orders()
    for fmt in ("json", "textproto", "trace"):
        text = getattr(s, "to_" + fmt)()
        back = schedule.parse(text, fmt, kind="zbv", ranks=4, microbatches=8)
        assert back.orders() == s.orders(), fmt


@pytest.mark.parametrize("call, error, message", [
    (lambda: schedule.generate("dualpipe", 4, 7), ValueError, "microbatches: expected an even number for dualpipe"),
    (lambda: schedule.generate("2f2b", 4, 8), ValueError, "2f2b"),
    (lambda: schedule.generate("1f1b", 4, 8.5), ValueError, "microbatches: expected an integer, got 8.5"),
    (lambda: schedule.generate("dualpipe", 4, 8).to_torch_csv(), ValueError, "dualpipe"),
    (lambda: schedule.from_torch_csv("0F0,0X1\n"), ValueError, "line 1 column"),
    (lambda: schedule.validate(schedule.from_actions([["0F0", "0B0"], ["1B0"]])), ValueError, "rank 1"),
    (lambda: schedule.simulate(schedule.generate("1f1b", 2, 2), "F=-1"), ValueError, "cost F: expected a finite number"),
    (lambda: schedule.simulate(schedule.generate("1f1b", 2, 2), None), ValueError, "cost: expected a string"),
    (lambda: schedule.simulate(schedule.generate("1f1b", 2, 2), phases=[]), ValueError, "phases: expected a dict"),
    (lambda: schedule.simulate(schedule.generate("1f1b", 2, 2), phases={"x": []}), ValueError,
     "phases: expected keys f, b, i, w, ep and ep_link, got 'x'"),
    (lambda: schedule.parse(10**12, "binary"), ValueError, "data: expected str or bytes, got int"),
    (lambda: schedule.from_actions({0: ["0F0", "0B0"], 2: ["1F0", "1B0"]}), ValueError,
     "orders: expected ranks 0..1 once each, got [0, 2]"),
    (lambda: schedule.from_actions([["0F0", 7]]), ValueError, "rank 0: 7 is not an action string"),
    (lambda: schedule.generate(None, 2, 2), ValueError, "kind: expected a string, got None"),
    (lambda: schedule.render(schedule.generate("1f1b", 2, 2), "png"), ValueError, "fmt: expected svg"),
    (lambda: schedule.parse(b"\x08\x99\x99", "binary"), ValueError, "binary schedule: malformed wire data at byte offset"),
    (lambda: schedule.generate("1f1b", 2, 2).actions(2), ValueError, "rank: expected 0..1, got 2"),
    (lambda: schedule.compare(0, 8), ValueError, "ranks: expected >= 1, got 0"),
])
def test_errors_carry_the_cpp_message(call, error, message):
    with pytest.raises(error) as e:
        call()
    assert message in str(e.value)


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q", "-p", "no:cacheprovider"]))
