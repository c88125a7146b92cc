#!/usr/bin/env python3
"""Parses a JSON document strictly and checks expressions about it.

Usage: json_check.py FILE|- [EXPR ...]

Strict: exactly one document, no NaN or Infinity, no repeated key in an
object. Each EXPR is a Python expression over the document `d`; the check
fails (exit 1, naming the expression) when one is false. Used by the CLI
tests, so that every JSON a tool prints is parsed, never substring-matched.
"""
import json
import sys


def _no_constants(name):
    raise ValueError(f"non-finite number {name} is not JSON")


def _no_duplicates(pairs):
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"duplicate key {key!r}")
        seen[key] = value
    return seen


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    text = sys.stdin.read() if argv[1] == "-" else open(argv[1]).read()
    try:
        d = json.loads(text, parse_constant=_no_constants, object_pairs_hook=_no_duplicates)
    except ValueError as e:
        print(f"json_check: {argv[1]}: {e}", file=sys.stderr)
        return 1
    for expr in argv[2:]:
        if not eval(expr, {}, {"d": d}):  # the tests' own expressions
            print(f"json_check: {argv[1]}: false: {expr}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
