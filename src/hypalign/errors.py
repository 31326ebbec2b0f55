"""Errors that carry a message meant for the user (the CLI prints them on one line, exit code 2)."""


class InputError(ValueError):
    """Bad user input: a missing or malformed file, a wrong shape, a value off the manifold.

    The message names the file (and line, row or field) and says what was expected.
    """


class MissingDataError(InputError):
    """A data set that hypalign reads from a package (e.g. Debian's) is not installed."""
