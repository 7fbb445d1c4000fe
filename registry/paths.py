"""Paths as users type them: a leading `~` is expanded, and a missing path, a directory given for a
file or a file given for a directory each get their own message."""
import os

from registry.errors import ZooError


def expand(path):
    """`path` with a leading `~` or `~user` expanded (bash leaves `--flag=~/x` as it is); None stays None.

    Also the argparse `type` of every path option."""
    return None if path is None else os.path.expanduser(str(path))


def require_file(path, what, fix="", error=ZooError):
    """`path` expanded; raises `error` ("<what> PATH does not exist" / "... is a directory, not a file")."""
    path = expand(path)
    if os.path.isdir(path):
        raise error("%s %s is a directory, not a file%s" % (what, path, fix))
    if not os.path.isfile(path):
        raise error("%s %s does not exist%s" % (what, path, fix))
    return path


def require_dir(path, what, fix="", error=ZooError):
    """`path` expanded; raises `error` ("<what> PATH does not exist" / "... is a file, not a directory")."""
    path = expand(path)
    if os.path.isfile(path):
        raise error("%s %s is a file, not a directory%s" % (what, path, fix))
    if not os.path.isdir(path):
        raise error("%s %s does not exist%s" % (what, path, fix))
    return path


def make_dir(path, what, error=ZooError):
    """Creates the directory `path` and its parents unless it exists; returns `path` expanded. Raises `error`
    ("<what> PATH: FILE is a file, not a directory") when `path`, or a directory above it, is a file."""
    path = expand(path)
    try:
        os.makedirs(path, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocking = path
        while blocking and not os.path.isfile(blocking) and os.path.dirname(blocking) != blocking:
            blocking = os.path.dirname(blocking)
        raise error("%s %s: %s is a file, not a directory" % (what, path, "it" if blocking == path else blocking))
    return path
