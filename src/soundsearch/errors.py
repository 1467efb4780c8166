"""Errors meant for the user: the message names the thing and says what to do."""


class UserError(Exception):
    """A problem the user can fix (bad input, missing file, wrong model). Shown without traceback."""


class CheckpointError(UserError):
    """A checkpoint that cannot be read or does not fit the model."""


class DataError(UserError):
    """Malformed data set files (CSV/JSON) or missing audio."""
