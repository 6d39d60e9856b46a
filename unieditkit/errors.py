"""Errors a user can act on.

Every failure caused by the user's input (a path, a flag, a file's field) is a ``UserError``: the CLI prints its
message as one line and exits with status 2, with no traceback, because the message already names what is wrong
and how to fix it.
"""

from __future__ import annotations

import difflib
from typing import Iterable


class UserError(Exception):
    """A problem in the user's input; ``str(err)`` is a single line naming the culprit and the fix."""


class TaxonomyError(UserError):
    """The taxonomy file is invalid or a name in it was not found."""


class MissingModelError(UserError):
    """A model checkpoint or tokenizer is not available offline; the message says how to get it. Several missing
    at once are the one message of more than one line: a list, one item per line (``require_weights``)."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``"did you mean 'x'? "`` naming the closest of ``choices`` to a misspelt ``word``, or ``""`` when none is
    close: the hint an unknown key or name gets, so a typo is fixed from the message alone."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f"did you mean '{close[0]}'? " if close else ""
