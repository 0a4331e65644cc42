"""Errors raised by the shared contract package."""


class CallmarkError(Exception):
    """Base class of every callmark error."""


class UnknownCategoryError(CallmarkError, ValueError):
    """A category key or code that the taxonomy does not define."""


class NumberFormatError(CallmarkError, ValueError):
    """A caller string that cannot be turned into a number key where one is required."""
