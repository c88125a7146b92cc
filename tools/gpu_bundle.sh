#!/usr/bin/env bash
# Builds every GPU test and benchmark (tag `gpu`, plus the CLIs that take a
# GPU backend) and copies them into one folder that runs on a GPU host without
# Bazel: bin/ (executables), lib/ (non-system shared libraries such as Debian's
# libbenchmark), run.sh (runs every test, then the benchmarks) and README.
# The NVIDIA driver, cuBLAS and NCCL are not copied: the host's own are used.
#
# Usage: tools/gpu_bundle.sh [OUT_DIR]     (default: .bundle, git-ignored)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-.bundle}"

mapfile -t targets < <(bazel query 'attr(tags, "\bgpu\b", kind("cc_(test|binary)", //...))' 2>/dev/null)
((${#targets[@]})) || { echo "gpu_bundle: no GPU targets" >&2; exit 1; }
bazel build "${targets[@]}"

rm -rf "$out"
mkdir -p "$out/bin" "$out/lib"
tests=()
benches=()
for t in "${targets[@]}"; do
  bin="bazel-bin/$(sed -e 's|^//||' -e 's|:|/|' <<<"$t")"
  [[ -x "$bin" ]] || { echo "gpu_bundle: $t was not built (no CUDA toolkit?)" >&2; exit 1; }
  cp "$bin" "$out/bin/"
  name="$(basename "$bin")"
  if [[ "$name" == *_test ]]; then
    tests+=("$name")
  elif [[ "$name" == *_benchmark ]]; then
    benches+=("$name")
  fi
  # Non-system libraries the binary loads (the host provides libc, libstdc++,
  # the driver, cuBLAS and NCCL).
  ldd "$bin" | awk '/=> \//{print $1, $3}' | while read -r soname path; do
    case "$soname" in
      libc.so*|libm.so*|libstdc++*|libgcc_s*|libpthread*|libdl.so*|librt.so*|ld-linux*) ;;
      libcuda.so*|libcublas*|libnccl*|libcudart.so*) ;;
      *) cp -L -n "$path" "$out/lib/$soname" ;;
    esac
  done
done

cat >"$out/run.sh" <<'RUN'
#!/usr/bin/env bash
# Runs every bundled GPU test, then each benchmark briefly. Set
# TANDEM_CUDA_LIBS to folders holding libcublas.so.13 and libnccl.so.2 if they
# are not found automatically (see README).
here="$(cd "$(dirname "$0")" && pwd)"
libs="$here/lib"
for d in ${TANDEM_CUDA_LIBS:-} /usr/local/cuda/lib64 \
         $(python3 -c 'import nvidia, os; p = os.path.dirname(nvidia.__path__[0]); print(" ".join(os.path.join(p, "nvidia", s, "lib") for s in ("cublas", "nccl", "cu13")))' 2>/dev/null); do
  [[ -d "$d" ]] && libs="$libs:$d"
done
export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
status=0
for t in TESTS; do
  echo "== $t"
  "$here/bin/$t" || status=1
done
for b in BENCHES; do
  echo "== $b"
  "$here/bin/$b" --benchmark_min_time=${BENCH_MIN_TIME:-0.1} || status=1
done
if [[ -x "$here/bin/demo_gpu" ]]; then
  echo "== demo_gpu --backend=cuda_local (the main job on one GPU: 4 PP x 2 EP virtual ranks)"
  "$here/bin/demo_gpu" --backend=cuda_local --out="${TMPDIR:-/tmp}/tandem_demo_gpu" || status=1
fi
if [[ -x "$here/bin/comm_bench_gpu" ]]; then
  echo "== comm_bench_gpu: cuda_local (targets: >= 70% of D2D memcpy at >= 64 MiB per rank)"
  for n in 2 4 8; do
    for op in alltoall allreduce allgather sendrecv; do
      "$here/bin/comm_bench_gpu" --backend=cuda_local --ranks=$n --op=$op --bytes=67108864:268435456 || status=1
    done
    # 4096 tokens x 4096 f32 = 64 MiB of rows per rank.
    for op in dispatch combine; do
      "$here/bin/comm_bench_gpu" --backend=cuda_local --ranks=$n --op=$op --tokens=4096 --hidden=4096 || status=1
    done
  done
  echo "== comm_bench_gpu: nccl, one process"
  RANK=0 WORLD_SIZE=1 LOCAL_RANK=0 MASTER_ADDR=127.0.0.1 MASTER_PORT=${MASTER_PORT:-29555} \
    "$here/bin/comm_bench_gpu" --backend=nccl --op=allreduce --bytes=1048576:67108864 || status=1
fi
exit $status
RUN
sed -i -e "s|TESTS|${tests[*]:-}|" -e "s|BENCHES|${benches[*]:-}|" "$out/run.sh"
chmod +x "$out/run.sh"

cat >"$out/README.md" <<'DOC'
# tandem GPU bundle

Built by `tools/gpu_bundle.sh`: GPU tests and benchmarks, no Bazel needed.

    ./run.sh                      # every test, then every benchmark briefly

Libraries: `lib/` holds the non-system libraries the binaries need. cuBLAS
(libcublas.so.13, libcublasLt.so.13) and NCCL (libnccl.so.2) come from the
host: run.sh looks in /usr/local/cuda/lib64 and in the PyTorch environment's
`nvidia/{cublas,nccl,cu13}/lib` folders; otherwise point TANDEM_CUDA_LIBS (or
LD_LIBRARY_PATH) at the folders that hold them, e.g.

    TANDEM_CUDA_LIBS="$(python3 -c 'import nvidia.nccl, os; print(os.path.dirname(nvidia.nccl.__file__))')/lib" ./run.sh
DOC
du -sh "$out"
echo "gpu_bundle: ${#tests[@]} tests, ${#benches[@]} benchmarks in $out"
