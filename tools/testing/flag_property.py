#!/usr/bin/env python3
"""Property test of a CLI's flag parsing: never a crash, always 0 or 2.

Usage: flag_property.py SPEC BINARY [FIXED_ARG ...]

SPEC is a JSON file: {"seed": S, "cases": N, "flags": {NAME: KIND, ...}}
where KIND is ["int", LO, HI], ["float", LO, HI] or ["choice", A, B, ...].
Each case gives every flag, with probability 1/2, a value: in 40 % of the
cases only valid ones (within the range or a choice; their combination may
still be refused), otherwise each is invalid with probability 0.3 (out of
range, huge, negative, not a number, empty, a long string). The binary runs with
the fixed arguments (a validate-only flag) under a 4 GiB address-space
limit; each case must exit 0, or exit 2 with a message on stderr that
names a flag (its name, or "--"). A signal, another exit status or a timeout fails the test,
printing the case.
"""
import json
import random
import resource
import subprocess
import sys

LIMIT_BYTES = 4 << 30


def invalid(kind, rng):
    return rng.choice([
        "-1", "0", "-2147483648", "2147483647", "9223372036854775807", "1e308", "nan", "inf", "-inf",
        "abc", "", "1:2:3", "x" * 5000, str(rng.randint(-10**6, 10**9)),
    ])


def valid(kind, rng):
    if kind[0] == "int":
        return str(rng.randint(kind[1], kind[2]))
    if kind[0] == "float":
        return repr(rng.uniform(kind[1], kind[2]))
    return rng.choice(kind[1:])


def shown(args):
    return [a if len(a) < 100 else a[:100] + f"... ({len(a)} chars)" for a in args]


def limit():
    resource.setrlimit(resource.RLIMIT_AS, (LIMIT_BYTES, LIMIT_BYTES))


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    spec = json.load(open(argv[1]))
    binary, fixed = argv[2], argv[3:]
    rng = random.Random(spec["seed"])
    counts = {0: 0, 2: 0}
    for case in range(spec["cases"]):
        args = []
        bad = 0 if rng.random() < 0.4 else 0.3  # chance of an invalid value
        for name, kind in spec["flags"].items():
            if rng.random() < 0.5:
                value = invalid(kind, rng) if rng.random() < bad else valid(kind, rng)
                args.append(f"--{name}={value}")
        try:
            r = subprocess.run([binary, *fixed, *args], capture_output=True, text=True, timeout=60,
                               preexec_fn=limit)
        except subprocess.TimeoutExpired:
            print(f"case {case}: timed out: {shown(args)}", file=sys.stderr)
            return 1
        named = any(name in r.stderr for name in spec["flags"]) or "--" in r.stderr
        if r.returncode not in (0, 2) or (r.returncode == 2 and not named):
            print(f"case {case}: exit {r.returncode}: {shown(args)}\n{r.stderr[-2000:]}", file=sys.stderr)
            return 1
        counts[r.returncode] += 1
    print(f"{spec['cases']} cases: {counts[0]} valid, {counts[2]} refused")
    # Both kinds must occur, or the generator tests nothing.
    return 0 if counts[0] > 0 and counts[2] > 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
