"""tandem_proto_library: C++ (and optionally Python) from .proto with the system protoc.

Bazel 4.2.3's native cc_proto_library needs @com_google_protobuf, which an
offline build does not have, so this macro runs Debian's /usr/bin/protoc in a
genrule and wraps the generated code in a cc_library named `name`.

Example:
  tandem_proto_library(name = "schedule_proto", srcs = ["schedule.proto"], py = True)
  # -> :schedule_proto (cc_library), :schedule_proto_py (the *_pb2.py files)
"""

_PROTOC = "/usr/bin/protoc"

def tandem_proto_library(name, srcs, deps = [], py = False, visibility = None, **kwargs):
    """Generates C++ (and with py = True Python) code from `srcs`.

    Args:
      name: the cc_library; the Python files are the filegroup `name + "_py"`.
      srcs: .proto files of this package; imports are relative to the workspace root.
      deps: other tandem_proto_library targets whose .proto files `srcs` import.
      py: also emit `<file>_pb2.py` with --python_out.
      visibility: of the generated targets.
      **kwargs: passed to the cc_library (e.g. copts).
    """
    stems = [s[:-len(".proto")] for s in srcs]
    proto_deps = [d + "_srcs" for d in deps]
    native.filegroup(name = name + "_srcs", srcs = srcs + proto_deps, visibility = visibility)

    # Imports and generated includes are relative to tandem's root, which is
    # external/<name> when another workspace builds tandem's targets.
    repo = native.repository_name()
    root = "." if repo == "@" else "external/" + repo[1:]
    out = "$(GENDIR)" if repo == "@" else "$(GENDIR)/" + root
    flags = "--proto_path=%s --proto_path=/usr/include" % root
    cmd = "%s %s --cpp_out=%s $(SRCS)" % (_PROTOC, flags, out)
    native.genrule(
        name = name + "_cc_gen",
        srcs = srcs,
        outs = [s + ".pb.h" for s in stems] + [s + ".pb.cc" for s in stems],
        cmd = cmd,
        tools = proto_deps,
        message = "protoc (C++) " + name,
    )
    native.cc_library(
        name = name,
        srcs = [s + ".pb.cc" for s in stems],
        hdrs = [s + ".pb.h" for s in stems],
        deps = deps + ["@protobuf"],
        visibility = visibility,
        **kwargs
    )
    if py:
        native.genrule(
            name = name + "_py_gen",
            srcs = srcs,
            outs = [s + "_pb2.py" for s in stems],
            cmd = "%s %s --python_out=%s $(SRCS)" % (_PROTOC, flags, out),
            tools = proto_deps,
            message = "protoc (Python) " + name,
        )
        native.filegroup(name = name + "_py", srcs = [s + "_pb2.py" for s in stems], visibility = visibility)
