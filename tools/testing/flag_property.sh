#!/usr/bin/env bash
# Runs flag_property.py with Debian's Python: flag_property.sh SCRIPT SPEC BINARY [FIXED_ARG ...]
set -euo pipefail
exec /usr/bin/python3 "$@"
