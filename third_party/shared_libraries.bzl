"""Builds a target against Debian's shared Abseil and protobuf libraries.

Debian's static Abseil and protobuf archives are not position-independent,
so a shared object (the Python extension) cannot link them. The setting
//third_party:shared_libraries switches @absl and @protobuf to their .so
variants; `shared_libraries_transition` turns it on for one attribute, so
only what that attribute builds (in its own configuration) links them and
every other binary stays static.

Example (python/package.bzl):
  attrs = {"extension": attr.label(cfg = shared_libraries_transition), ...}
"""

def _setting_impl(ctx):
    return []

# A boolean build setting (no Skylib offline).
bool_setting = rule(
    implementation = _setting_impl,
    build_setting = config.bool(flag = False),
)

_SETTING = str(Label("//third_party:shared_libraries"))

def _to_shared(settings, attr):
    return {_SETTING: True}

shared_libraries_transition = transition(
    implementation = _to_shared,
    inputs = [],
    outputs = [_SETTING],
)
