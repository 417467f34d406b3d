"""Errors raised by :mod:`mechscope.dictionaries`. Each message names what was expected and what was found."""

from __future__ import annotations


class DictionaryError(Exception):
    """Base class of every error raised by the dictionaries package."""


class UnknownArchitectureError(DictionaryError, ValueError):
    """An architecture name that no registered dictionary class handles; the message lists the valid names."""


class DictionaryConfigError(DictionaryError, ValueError):
    """An invalid dictionary configuration (a width of zero, an option that does not apply, ...)."""


class DictionaryFormatError(DictionaryError, ValueError):
    """A file that exists but cannot be read as a dictionary: corrupt, truncated, wrong keys, shapes or values."""


class DictionaryNotFoundError(DictionaryError, FileNotFoundError):
    """A folder, file or hub path that does not hold the files a dictionary needs."""


class DictionaryShapeError(DictionaryError, ValueError):
    """A dictionary used with activations (or a model hook point) of another width or hook."""


class DictionaryModelError(DictionaryError, ValueError):
    """A dictionary used with another model than the one its ``model_name`` records (even when widths agree)."""
