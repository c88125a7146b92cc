"""tandem: pipeline schedules and expert-parallel load balancing from C++.

  tandem.eplb      rebalance_experts (a drop-in for DeepSeek's eplb), metrics,
                   LoadRecorder
  tandem.schedule  generate, validate, simulate, render, compare; PyTorch
                   pipelining's CSV and action strings; the protobuf message

Built for Debian 12's /usr/bin/python3 (3.11) and its shared Abseil and
protobuf libraries. Errors carry the C++ message: bad input raises
ValueError, a missing key KeyError, anything else RuntimeError.
"""

__version__ = "0.1.0"

from tandem import eplb, schedule  # noqa: E402,F401
