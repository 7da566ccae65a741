"""The one exception type the CLI turns into a one-line error and a non-zero exit."""


class LangneuronsError(Exception):
    """A user-facing error: bad input, incompatible files, unsupported model.

    The message must be one line that says what was wrong and, where possible, what to do.
    """
