"""CUDA build macros: tandem_cuda_library and tandem_cuda_test.

tandem_cuda_library compiles each .cu with nvcc for sm_90 (Hopper: H100/H200)
plus compute_90 PTX so newer GPUs JIT it, and wraps the objects in a
cc_library, so dependents see an ordinary C++ target. Every target made here is
incompatible (skipped by `//...`) when @local_cuda found no toolkit.

Example:
  tandem_cuda_library(name = "saxpy", srcs = ["saxpy.cu"], hdrs = ["saxpy.h"])
"""

load("@local_cuda//:defs.bzl", "CUDA_COMPATIBLE_WITH", "CUDA_PATH")

def _headers_impl(ctx):
    return [DefaultInfo(files = depset(transitive = [
        d[CcInfo].compilation_context.headers
        for d in ctx.attr.deps
    ]))]

# The headers of cc_library deps, so that nvcc's sandbox holds them.
_headers = rule(implementation = _headers_impl, attrs = {"deps": attr.label_list(providers = [CcInfo])})

_NVCC_FLAGS = " ".join([
    "-std=c++17",
    "-O3",
    "-gencode arch=compute_90,code=sm_90",
    "-gencode arch=compute_90,code=compute_90",
    "-Xcompiler -fPIC",
    "-Xcompiler -Wall",
    "--expt-relaxed-constexpr",
    "-I.",
    "-I$(GENDIR)",
])

def tandem_cuda_library(name, srcs = [], hdrs = [], cu_hdrs = [], deps = [], copts = [], visibility = None, **kwargs):
    """A cc_library whose .cu sources are compiled by nvcc.

    Args:
      name: the cc_library.
      srcs: .cu files (compiled by nvcc) and .cc files (compiled by the C++ toolchain).
      hdrs: public headers; host-callable, no CUDA syntax beyond cudaStream_t.
      cu_hdrs: .cuh files shared between .cu files of this target.
      deps: cc_library dependencies (headers visible to nvcc must be in hdrs of these).
      copts: for the .cc sources.
      visibility: of the cc_library.
      **kwargs: passed to the cc_library.
    """
    cu = [s for s in srcs if s.endswith(".cu")]
    cc = [s for s in srcs if not s.endswith(".cu")]
    objs = []
    if cu:
        _headers(
            name = name + "_dep_headers",
            deps = deps,
            target_compatible_with = CUDA_COMPATIBLE_WITH,
            testonly = kwargs.get("testonly", False),
        )
    for src in cu:
        obj = name + "_" + src[:-len(".cu")].replace("/", "_") + ".o"
        native.genrule(
            name = obj.replace(".", "_"),
            srcs = [src, name + "_dep_headers"] + hdrs + cu_hdrs,
            outs = [obj],
            cmd = "%s/bin/nvcc %s -c $(location %s) -o $@" % (CUDA_PATH, _NVCC_FLAGS, src),
            message = "nvcc " + src,
            target_compatible_with = CUDA_COMPATIBLE_WITH,
            testonly = kwargs.get("testonly", False),
        )
        objs.append(obj)
    native.cc_library(
        name = name,
        srcs = cc + objs,
        hdrs = hdrs,
        copts = copts,
        deps = deps + ["@local_cuda//:cudart"],
        target_compatible_with = CUDA_COMPATIBLE_WITH,
        visibility = visibility,
        **kwargs
    )

def tandem_cuda_test(name, tags = [], **kwargs):
    """A cc_test tagged `gpu`; it must GTEST_SKIP when no GPU is visible."""
    native.cc_test(
        name = name,
        tags = tags + ["gpu"],
        target_compatible_with = CUDA_COMPATIBLE_WITH,
        **kwargs
    )

def tandem_cuda_binary(name, tags = [], **kwargs):
    """A cc_binary that needs the toolkit (e.g. a GPU benchmark)."""
    native.cc_binary(
        name = name,
        tags = tags + ["gpu"],
        target_compatible_with = CUDA_COMPATIBLE_WITH,
        **kwargs
    )
