"""Packs the assembled tandem package into a wheel (PEP 427), deterministically.

  build_wheel.py --out DIR/tandem-V-cp311-cp311-linux_x86_64.whl --version V FILE...

FILEs are the package's files (bazel-bin/python/tandem/*); each goes to
tandem/<basename>. The wheel targets Debian 12: CPython 3.11 and Debian's
shared Abseil 20220623 and protobuf 3.21 libraries, which the extension
module links (METADATA says so under Requires-External). Timestamps are
fixed, so the same files give the same bytes.
"""

import argparse
import base64
import hashlib
import os
import re
import sys
import zipfile

TAG = "cp311-cp311-linux_x86_64"
SUMMARY = "tandem: pipeline schedules and expert-parallel load balancing (C++), from Python"
DESCRIPTION = """\
tandem's Python package: tandem.eplb (a drop-in for DeepSeek's eplb.rebalance_experts, with
stable, refined, migration-aware and speed-aware modes, metrics and a load recorder) and
tandem.schedule (pipeline schedules: generate, validate, simulate, render, PyTorch pipelining's CSV
and action strings, the schedule protobuf).

Built for Debian 12 (bookworm) x86-64: /usr/bin/python3 (3.11) with Debian's python3-numpy and
python3-protobuf, and the shared libraries of libabsl20220623 and libprotobuf32. Install offline:
pip install --no-index --no-deps tandem-*.whl into a venv made with --system-site-packages.
"""


def _hash(data):
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _entry(name, executable=False):
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = (0o755 if executable else 0o644) << 16
    return info


def build(out, version, files):
    name = os.path.basename(out)
    if name != f"tandem-{version}-{TAG}.whl":
        raise ValueError(f"--out: expected a file named tandem-{version}-{TAG}.whl, got {name}")
    contents = {}
    for path in files:
        arc = "tandem/" + os.path.basename(path)
        if arc in contents:
            raise ValueError(f"{path}: a second file for {arc}")
        with open(path, "rb") as f:
            contents[arc] = f.read()
    init = contents.get("tandem/__init__.py", b"").decode()
    found = re.search(r'^__version__ = "([^"]+)"', init, re.M)
    if not found or found.group(1) != version:
        raise ValueError(f"tandem/__init__.py: expected __version__ = \"{version}\", got "
                         f"{found.group(1) if found else 'none'}")
    if "tandem/_tandem.so" not in contents:
        raise ValueError("the extension module tandem/_tandem.so is missing")
    info = f"tandem-{version}.dist-info"
    contents[f"{info}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: tandem\nVersion: {version}\nSummary: {SUMMARY}\n"
        "Requires-Python: ==3.11.*\nRequires-Dist: numpy\nRequires-Dist: protobuf\n"
        "Requires-External: libabsl20220623 (Debian 12)\nRequires-External: libprotobuf32 (Debian 12)\n"
        "Classifier: Operating System :: POSIX :: Linux\nClassifier: Programming Language :: C++\n"
        f"Description-Content-Type: text/plain\n\n{DESCRIPTION}").encode()
    contents[f"{info}/WHEEL"] = (f"Wheel-Version: 1.0\nGenerator: tandem build_wheel.py\nRoot-Is-Purelib: false\n"
                                 f"Tag: {TAG}\n").encode()
    record = "".join(f"{arc},{_hash(data)},{len(data)}\n" for arc, data in sorted(contents.items()))
    contents[f"{info}/RECORD"] = (record + f"{info}/RECORD,,\n").encode()
    with zipfile.ZipFile(out, "w") as z:
        # Package files first, the .dist-info last (as PEP 427 recommends).
        for arc in sorted(contents, key=lambda a: (a.startswith(info), a)):
            z.writestr(_entry(arc, arc.endswith(".so")), contents[arc])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--version", required=True)
    parser.add_argument("files", nargs="+")
    args = parser.parse_args()
    try:
        build(args.out, args.version, args.files)
    except (OSError, ValueError) as e:
        print(f"build_wheel: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
