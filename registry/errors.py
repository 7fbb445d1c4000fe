"""The base of every error a user can fix: `zoo-run` prints its message, without a traceback."""


class ZooError(Exception):
    pass


class DataError(ZooError):
    """Bad input data: a missing path, no matching files, a bad label, an undecodable image."""
