"""Compiler flags for project code (generated code and system headers are exempt)."""

COPTS = [
    "-Wall",
    "-Wextra",
    "-Werror",
]
