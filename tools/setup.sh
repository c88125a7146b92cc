#!/usr/bin/env bash
# Installs what tandem needs from Debian (idempotent): Bazel 4.2.3 and the
# C++ libraries the offline build wraps. Only the Debian archive is used.
# The CUDA toolkit is optional: without /usr/local/cuda (or $CUDA_PATH) the
# CUDA targets are skipped.
set -euo pipefail

packages=(
  bazel-bootstrap   # Bazel 4.2.3, WORKSPACE mode
  g++
  libabsl-dev       # Abseil 20220623
  libgtest-dev libgmock-dev
  libbenchmark-dev  # Google Benchmark 1.7.1
  libprotobuf-dev protobuf-compiler
  nlohmann-json3-dev  # JSON (header-only)
  clang-format      # 14: .ci/run checks the formatting
  zlib1g-dev        # needed by the static protobuf runtime
  python3           # .ci/run's benchmark table
  # The Python package (//python), for Debian's /usr/bin/python3 (3.11):
  pybind11-dev python3-dev
  python3-numpy python3-protobuf python3-pytest python3-venv
  python3-torch     # tests with torch.Tensor inputs
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
  echo "setup: all ${#packages[@]} Debian packages present"
else
  echo "setup: installing ${missing[*]}"
  sudo=""
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { echo "setup: need root (or sudo) to install ${missing[*]}" >&2; exit 1; }
    sudo="sudo"
  fi
  export DEBIAN_FRONTEND=noninteractive
  if ! $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >/tmp/tandem-setup.log 2>&1; then
    echo "setup: apt-get install failed; refreshing the package lists and retrying" >&2
    $sudo apt-get update -q >>/tmp/tandem-setup.log 2>&1 || true
    if ! $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >>/tmp/tandem-setup.log 2>&1; then
      tail -n 20 /tmp/tandem-setup.log >&2
      echo "setup: could not install ${missing[*]} (see /tmp/tandem-setup.log)" >&2
      exit 1
    fi
  fi
  echo "setup: installed ${missing[*]}"
fi

cuda="${CUDA_PATH:-/usr/local/cuda}"
if [[ -x "$cuda/bin/nvcc" ]]; then
  echo "setup: CUDA toolkit at $cuda ($("$cuda/bin/nvcc" --version | tail -n 1)); CUDA targets build"
else
  echo "setup: no CUDA toolkit at $cuda; CUDA targets are skipped"
fi
