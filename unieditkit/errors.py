"""Errors a user can act on.

Every failure caused by the user's input (a path, a flag, a file's field) is a ``UserError``: the CLI prints its
message as one line and exits with status 2, with no traceback, because the message already names what is wrong
and how to fix it.
"""


class UserError(Exception):
    """A problem in the user's input; ``str(err)`` is a single line naming the culprit and the fix."""


class TaxonomyError(UserError):
    """The taxonomy file is invalid or a name in it was not found."""


class MissingModelError(UserError):
    """A model checkpoint or tokenizer is not available offline; the message says how to get it."""
