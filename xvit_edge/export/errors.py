"""The one error every export step raises: what went wrong and what to do, in one line."""


class ExportError(RuntimeError):
    """An export that could not be made or did not verify; nothing is left behind."""
