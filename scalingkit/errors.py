"""One exception type for everything a user can get wrong.

The CLI turns a UserError into a one-line message and exit code 2; anything else is a bug and becomes a
one-line 'internal error' with exit code 1 (SCALINGKIT_DEBUG=1 shows the traceback).
"""


class UserError(Exception):
    """Bad input: a flag, a sweep file, a CSV, a store. The message is shown to the user as is."""


class StoreError(UserError):
    """The cube on disk is missing, corrupted or incompatible with the request."""
