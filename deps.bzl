"""tandem's external dependencies, declared once for tandem and its users.

A workspace that uses tandem's targets declares tandem and then calls
tandem_dependencies() (see examples/external/WORKSPACE):

  local_repository(name = "tandem", path = "/path/to/tandem")
  load("@tandem//:deps.bzl", "tandem_dependencies")
  tandem_dependencies()

It gets what tandem's BUILD files name: @absl, @gtest, @benchmark,
@protobuf, @nlohmann_json and @pybind11 from Debian's packages (tools/setup.sh
installs them), @local_cuda (the CUDA toolkit, or stand-ins that make CUDA
targets incompatible), and the offline stand-ins for @rules_cc, @rules_java
and @remote_coverage_tools that Bazel 4.2.3 would otherwise download. A
repository the workspace already declares is left alone.

A workspace that builds tandem's Python package (@tandem//python:tandem)
also calls tandem_python_toolchain(): its extension is for Debian 12's
/usr/bin/python3, which py_binary and py_test must then run on.
"""

load("//third_party/cuda:cuda_configure.bzl", "cuda_configure")

def _tandem_dir_impl(ctx):
    """A repository whose files are those of the folder holding `marker`."""
    folder = ctx.path(ctx.attr.marker).dirname
    for child in folder.readdir():
        ctx.symlink(child, child.basename)

_tandem_dir = repository_rule(
    implementation = _tandem_dir_impl,
    attrs = {"marker": attr.label(allow_single_file = True)},
    local = True,
)

# Debian's libraries under /usr, with tandem's BUILD files for them.
_DEBIAN = {
    "absl": "absl.BUILD",  # libabsl-dev (Abseil 20220623)
    "gtest": "gtest.BUILD",  # libgtest-dev, libgmock-dev
    "benchmark": "benchmark.BUILD",  # libbenchmark-dev (1.7.1)
    "protobuf": "protobuf.BUILD",  # libprotobuf-dev, protobuf-compiler (3.21)
    "nlohmann_json": "nlohmann_json.BUILD",  # nlohmann-json3-dev (3.11)
    "pybind11": "pybind11.BUILD",  # pybind11-dev (2.10), python3-dev (3.11)
}

def tandem_dependencies():
    """Declares every repository tandem's targets need (offline)."""
    existing = native.existing_rules()
    for name in ["rules_cc", "rules_java", "remote_coverage_tools"]:
        if name not in existing:
            _tandem_dir(name = name, marker = Label("//third_party/%s:WORKSPACE" % name))
    for name, build_file in _DEBIAN.items():
        if name not in existing:
            native.new_local_repository(
                name = name,
                build_file = str(Label("//third_party:" + build_file)),
                path = "/usr",
            )
    if "local_cuda" not in existing:
        cuda_configure(name = "local_cuda")

def tandem_python_toolchain():
    """Runs the workspace's Python targets on Debian 12's /usr/bin/python3."""
    native.register_toolchains(str(Label("//third_party/python:toolchain")))
