"""The recording package's two errors (a module of their own: the CLI imports them without mcap)."""


class RecordingError(Exception):
    """A user's mistake in the recording options (one line)."""


class RecordingInvalid(Exception):
    """Not a readable recording (one line: what is wrong and where)."""
