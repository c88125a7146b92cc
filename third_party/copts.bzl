"""Compiler flags shared by every tandem target (C++17 comes from .bazelrc)."""

TANDEM_COPTS = [
    "-Wall",
    "-Wextra",
    "-Wno-unused-parameter",
    "-Wno-sign-compare",
    "-Werror",
]

TANDEM_TEST_COPTS = TANDEM_COPTS
