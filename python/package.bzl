"""tandem_py_package: the importable `tandem` package, assembled in bazel-bin.

Copies the pure-Python sources and the generated *_pb2.py files into
`<package>/<name>/` and puts the extension module, built against Debian's
shared Abseil and protobuf (//third_party:shared_libraries.bzl), beside them,
so that PYTHONPATH=bazel-bin/<package> imports it. It is a Python
dependency too (PyInfo): a py_binary or py_test with it in `deps`, in this
workspace or another, imports the package with no path set up.

Example:
  tandem_py_package(name = "tandem", srcs = glob(["src/tandem/*.py"]),
                    extension = ":_tandem.so", protos = ["//schedule/ir:schedule_proto_py"])
  py_binary(name = "tool", srcs = ["tool.py"], deps = ["@tandem//python:tandem"])
"""

load("//third_party:shared_libraries.bzl", "shared_libraries_transition")

def _copy(ctx, src, name):
    out = ctx.actions.declare_file(ctx.attr.name + "/" + name)
    ctx.actions.symlink(output = out, target_file = src)
    return out

def _impl(ctx):
    files = [_copy(ctx, f, f.basename) for f in ctx.files.srcs + ctx.files.protos]
    extension = ctx.files.extension
    if len(extension) != 1:
        fail("extension: expected one shared object, got %s" % extension)
    files.append(_copy(ctx, extension[0], "_tandem.so"))
    # The folder holding <name>/, as a path under the runfiles root (the
    # repository's name first: tandem's own, or the one another workspace
    # gave it).
    repository = ctx.label.workspace_name or ctx.workspace_name
    sources = depset([f for f in files if f.extension == "py"])
    return [
        DefaultInfo(files = depset(files), runfiles = ctx.runfiles(files = files)),
        PyInfo(transitive_sources = sources, imports = depset([repository + "/" + ctx.label.package])),
    ]

tandem_py_package = rule(
    implementation = _impl,
    attrs = {
        "srcs": attr.label_list(allow_files = [".py"]),
        "protos": attr.label_list(allow_files = [".py"]),
        "extension": attr.label(cfg = shared_libraries_transition, allow_files = [".so"]),
        "_allowlist_function_transition": attr.label(
            default = "@bazel_tools//tools/allowlists/function_transition_allowlist",
        ),
    },
)
