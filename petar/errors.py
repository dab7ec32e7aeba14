"""Exceptions that carry an exit code and a message a clinician can act on.

The CLI maps them to exit codes (DESIGN.md §2): 2 bad input or usage, 3 model or weights missing, 1 anything else.
Messages are one line, say what is wrong and what to do, and never contain patient identifiers.
"""
from __future__ import annotations


class PetarError(Exception):
    """Base class: anything `petar` raises on purpose."""

    exit_code = 1


class InputError(PetarError, ValueError):
    """The input cannot be used as given (file, geometry, tags, coordinates, parameters)."""

    exit_code = 2


class LeakError(InputError):
    """A seeded segmentation grew beyond its guard (radius or volume): it ran into adjacent uptake."""


class ModelMissingError(PetarError):
    """Model weights or an optional dependency for an engine are not available."""

    exit_code = 3


class Cancelled(PetarError):
    """The user (or a job's cancel) stopped a long computation; nothing was produced."""

    exit_code = 130


class DeviceMemoryError(InputError):
    """The accelerator ran out of memory: the user must pick a smaller precision, quantise, or use the CPU."""
