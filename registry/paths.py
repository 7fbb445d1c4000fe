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
