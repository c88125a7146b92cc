"""Pipeline schedules: generate, validate, simulate, render, compare, convert.

  from tandem import schedule
  s = schedule.generate("zbv", ranks=4, microbatches=8)
  schedule.validate(s)                     # ValueError naming the action if not
  r = schedule.simulate(s, cost="F=1,B=2,I=1,W=1")
  csv = s.to_torch_csv()                   # PyTorch pipelining's CSV
  t = schedule.from_torch_csv(csv)         # and back

Results are what the `schedule` CLI prints as JSON, as dicts. Actions are
PyTorch's `_Action` strings ("0F3", "1SEND_F2", "(0F7;7B3)OVERLAP_F_B").
`Schedule.to_proto()` is the tandem.schedule_pb2.Schedule message.
Generation, validation and simulation run in C++ without the GIL.
"""

import json

from tandem import _tandem, schedule_pb2
from tandem._args import integer as _int
from tandem._args import string as _string

__all__ = ["KINDS", "Schedule", "generate", "validate", "simulate", "render", "compare", "from_torch_csv",
           "from_actions", "from_proto", "parse"]

# Every kind generate() knows (DeepSeek's DualPipe and DualPipeV, PyTorch's
# generators): gpipe, 1f1b, interleaved1f1b, loopedbfs, zb1p, zbv, dualpipe, dualpipev.
KINDS = tuple(_tandem.KINDS)


class Schedule:
    """A schedule: one program of actions per rank (immutable)."""

    def __init__(self, impl):
        self._s = impl

    kind = property(lambda self: self._s.kind)
    ranks = property(lambda self: self._s.ranks)
    stages = property(lambda self: self._s.stages)
    microbatches = property(lambda self: self._s.microbatches)  # both directions together
    directions = property(lambda self: self._s.directions)  # 2 for dualpipe, else 1
    chunks = property(lambda self: self._s.chunks)  # stage copies per rank
    lowered = property(lambda self: self._s.lowered)  # sends and receives present
    total_actions = property(lambda self: self._s.total_actions)

    def actions(self, rank):
        """Rank `rank`'s program as PyTorch action strings."""
        return self._s.actions(_int(rank, "rank"))

    def orders(self):
        """{rank: [action strings]}, PyTorch's pipeline_order without idle steps."""
        return {k: self._s.actions(k) for k in range(self.ranks)}

    def lower(self):
        """A copy with the sends and receives inserted (deadlock-free); itself if lowered."""
        return Schedule(self._s.lower())

    def to_torch_csv(self):
        """PyTorch pipelining's CSV (_dump_csv / _load_csv): one row per rank.

        ValueError for dualpipe, whose two directions PyTorch cannot place."""
        return self._s.encode("torch_csv")

    def to_json(self):
        return self._s.encode("json")

    def to_textproto(self):
        return self._s.encode("textproto")

    def to_trace(self):
        """tandem's trace text (`r0: F0.0 B0.0 ...`)."""
        return self._s.encode("trace")

    def to_binary(self):
        return self._s.to_binary()

    def to_proto(self):
        return schedule_pb2.Schedule.FromString(self._s.to_binary())

    def __repr__(self):
        return (f"Schedule(kind={self.kind!r}, ranks={self.ranks}, stages={self.stages}, "
                f"microbatches={self.microbatches}, lowered={self.lowered})")


def _impl(s):
    if not isinstance(s, Schedule):
        raise ValueError(f"schedule: expected a tandem.schedule.Schedule, got {type(s).__name__}")
    return s._s


def generate(kind, ranks, microbatches, chunks=None, with_comm=False):
    """The schedule of `kind`, op for op as its reference generates it.

    chunks: stage copies per rank for the looped kinds (None: the kind's
    default). with_comm: lowered (sends and receives inserted)."""
    return Schedule(_tandem.generate(_string(kind, "kind"), _int(ranks, "ranks"), _int(microbatches, "microbatches"),
                              _int(chunks or 0, "chunks"), bool(with_comm)))


def validate(schedule):
    """None if every gradient is computed once and the program cannot deadlock; else ValueError."""
    _tandem.validate(_impl(schedule))


_STEP_FIELDS = {"compute": ("us", "label"), "post": ("exchange", "bytes", "label"),
                "post_timed": ("exchange", "us", "label"), "wait": ("exchange",), "yield": ()}


def _step(step, where):
    if not isinstance(step, (tuple, list)) or not step or step[0] not in _STEP_FIELDS:
        raise ValueError(f"{where}: expected a step (kind, ...) with kind in {sorted(_STEP_FIELDS)}, got {step!r}")
    names = _STEP_FIELDS[step[0]]
    if not len(names) - ("label" in names) <= len(step) - 1 <= len(names):
        raise ValueError(f"{where}: expected ({step[0]!r}, {', '.join(names)}), got {step!r}")
    v = dict(zip(names, step[1:]))
    try:
        us = float(v.get("us", 0.0))
    except (TypeError, ValueError):
        raise ValueError(f"{where}: expected a time in microseconds, got {v['us']!r}") from None
    return (step[0], us, _int(v.get("bytes", 0), f"{where} bytes", 64), _int(v.get("exchange", 0), f"{where} exchange"),
            str(v.get("label", "")))


def _phases(phases):
    """{"f"|"b"|"i"|"w": [program per stage, or one], "ep": n, "ep_link": "LATENCY_US:GBPS"}."""
    if phases is None:
        return None, 1, ""
    if not isinstance(phases, dict):
        raise ValueError(f"phases: expected a dict, got {type(phases).__name__}")
    passes = {}
    for op, programs in phases.items():
        if op in ("ep", "ep_link"):
            continue
        if op not in ("f", "b", "i", "w"):
            raise ValueError(f"phases: expected keys f, b, i, w, ep and ep_link, got {op!r}")
        if not isinstance(programs, (list, tuple)) or not all(isinstance(p, (list, tuple)) for p in programs):
            raise ValueError(f"phases[{op!r}]: expected a list of programs (lists of steps), got {programs!r}")
        passes[op] = [[_step(st, f"phases[{op!r}][{k}][{j}]") for j, st in enumerate(program)]
                      for k, program in enumerate(programs)]
    return passes, _int(phases.get("ep", 1), "ep"), _string(phases.get("ep_link", ""), "ep_link")


def simulate(schedule, cost="F=1,B=2,I=1,W=1,FB=3", *, semantics="rendezvous", phases=None,
             critical_path=False):
    """Times the (lowered) schedule: the CLI's JSON as a dict.

    cost: "F=1,B=2,I=1,W=1,FB=3,p2p_latency=..,p2p_bandwidth=..,message_bytes=..,
    activation_bytes=.." (per-stage lists "F=1:2:1"). phases: per pass, the
    phase programs of the overlap model (schedule/simulator/phase_program.h),
    each step ("compute", us[, label]), ("post", exchange, bytes[, label]),
    ("post_timed", exchange, us[, label]), ("wait", exchange) or ("yield",),
    with "ep" ranks per stage and "ep_link" "LATENCY_US:GBPS" (default: no
    delay; "post" exchanges then take no time).
    Keys: kind, ranks, stages, microbatches, makespan, bubble, bubble_ratio,
    peak_activations, per_rank [{rank, busy, idle, finish, peak_activations,
    peak_activation_bytes, params_fraction}], critical_path (if asked)."""
    passes, ep, link = _phases(phases)
    return json.loads(_tandem.simulate(_impl(schedule), _string(cost, "cost"), _string(semantics, "semantics"),
                                       passes, ep, link, bool(critical_path)))


def render(schedule, fmt="svg", cost="F=1,B=2,I=1,W=1,FB=3", *, semantics="rendezvous", phases=None):
    """The simulated schedule as an SVG Gantt chart, ASCII ("ascii") or a Chrome trace ("chrome")."""
    passes, ep, link = _phases(phases)
    return _tandem.render(_impl(schedule), _string(fmt, "fmt"), _string(cost, "cost"),
                          _string(semantics, "semantics"), passes, ep, link)


def compare(ranks, microbatches, cost="F=1,B=2,I=1,W=1,FB=3", chunks=None, *, semantics="rendezvous"):
    """Every kind on the same ranks (costs per rank-sized stage): the CLI's JSON as a dict."""
    return json.loads(_tandem.compare(_int(ranks, "ranks"), _int(microbatches, "microbatches"),
                                      _string(cost, "cost"), _int(chunks or 0, "chunks"),
                                      _string(semantics, "semantics")))


def parse(data, fmt, kind="", microbatches=0, ranks=0, chunks=0):
    """A schedule from text or bytes: fmt torch_csv, binary, json, textproto or trace."""
    if isinstance(data, str):
        data = data.encode()
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ValueError(f"data: expected str or bytes, got {type(data).__name__}")
    return Schedule(_tandem.parse(bytes(data), _string(fmt, "fmt"), _string(kind, "kind"),
                                  _int(microbatches, "microbatches"), _int(ranks, "ranks"), _int(chunks, "chunks")))


def from_torch_csv(text, kind="", microbatches=0):
    """Parses PyTorch's CSV (one row per rank; idle cells and FSDP actions dropped)."""
    return parse(text, "torch_csv", kind, microbatches)


def from_actions(orders, kind="", microbatches=0):
    """A schedule from PyTorch's pipeline_order: {rank: [action strings]} or a list of lists ("" is idle)."""
    if isinstance(orders, dict):
        by_rank = {int(k) if isinstance(k, str) and k.isdigit() else _int(k, "orders rank"): v
                   for k, v in orders.items()}
        if len(by_rank) != len(orders) or sorted(by_rank) != list(range(len(orders))):
            raise ValueError(f"orders: expected ranks 0..{len(orders) - 1} once each, got {list(orders)}")
        rows = [by_rank[r] for r in range(len(orders))]
    elif isinstance(orders, (list, tuple)):
        rows = orders
    else:
        raise ValueError(f"orders: expected a dict or a list of lists, got {type(orders).__name__}")
    for r, row in enumerate(rows):
        if not isinstance(row, (list, tuple)):
            raise ValueError(f"orders[{r}]: expected a list of action strings, got {row!r}")
        for a in row:
            if a is not None and (not isinstance(a, str) or "," in a or "\n" in a):
                raise ValueError(f"rank {r}: {a!r} is not an action string")
    return from_torch_csv("".join(",".join("" if a is None else str(a) for a in row) + "\n" for row in rows),
                          kind, microbatches)


def from_proto(message):
    """A schedule from a tandem.schedule_pb2.Schedule (range-checked)."""
    return parse(message.SerializeToString(), "binary")
