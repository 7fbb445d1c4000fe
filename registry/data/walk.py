"""The files under an image folder (SRC), each real file listed once, for the class whose folder holds it.

Symbolic links are where a walk goes wrong: a folder link `cherry/loop -> ..` inside a class folder leads back to
SRC, and a walk that follows it lists every other class's images again under `cherry` (a wrong label for each), or
runs round a loop. Here a link is followed only when it leads out of SRC to something not listed yet; a link into
SRC (its own class folder, another class's, SRC itself or above it), to something listed already, or that is
broken is not followed. Every link met is returned as a Link, with what was done and why, for the build's report
and screen.

Only links need a check: a folder that is not a link lies inside the folder it was reached from, so its real
path is known to be new. Names are kept as the file system gives them (str, with surrogate escapes for bytes
that are not UTF-8); `printable` is the form for reports, screens and records.
"""
import collections
import os

Link = collections.namedtuple("Link", "path target followed reason")
Link.__doc__ = """path: the link as found under SRC; target: its real path; followed: whether its files were listed
(under the class of the folder that holds the link); reason: what it leads to, in words."""


def printable(name):
    """`name` (a path or a class name) as valid UTF-8 text: a byte that is not UTF-8 is written as `\\xNN`."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def inside(path, folder):
    """Whether real path `path` is `folder` or lies below it."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


class SourceWalk(object):
    """The walk of one SRC. `class_folders`: {class name: its folder (a path under SRC)}, {} for a flat SRC.

    Call `files(folder, name)` for each folder to list; `links` collects every link met."""

    def __init__(self, src, class_folders=None):
        self.src = os.path.realpath(src)
        self.owners = {}             # real folder -> class name
        self.followed = []           # real paths of the links followed out of SRC (folders and files)
        self.links = []
        for name, folder in sorted((class_folders or {}).items()):
            self.owners.setdefault(os.path.realpath(folder), name)

    def owner(self, real):
        """The class whose folder holds real path `real` (the innermost), or None."""
        best = None
        for folder, name in self.owners.items():
            if inside(real, folder) and (best is None or len(folder) > len(best[0])):
                best = (folder, name)
        return best[1] if best else None

    def class_folder_problem(self, name, folder):
        """Why the class folder `folder` of class `name` (a link itself) is not listed, or None."""
        real = os.path.realpath(folder)
        if self.owners.get(real, name) != name:
            return "a link to class %s's folder: its files are listed once, for %s" % (
                printable(self.owners[real]), printable(self.owners[real]))
        if inside(self.src, real):
            return "a link to %s, which holds SRC (a loop)" % printable(real)
        overlap = sorted(n for f, n in self.owners.items() if n != name and (inside(f, real) or inside(real, f)))
        if overlap:
            return "a link to %s, which holds or lies in the folder of class %s" % (printable(real),
                                                                                    printable(overlap[0]))
        return None

    def _problem(self, real, name, is_dir):
        """Why a link to real path `real`, met under class `name` (None: a flat SRC), is not followed, or None."""
        if not os.path.exists(real):
            return "a broken link (%s does not exist)" % printable(real)
        if is_dir and (inside(self.src, real) or any(inside(f, real) and f != real for f in self.owners)):
            return "it leads back to SRC or above it (a loop)"
        holder = self.owner(real)
        if holder is not None and holder == name:
            return "it leads into its own class folder (a loop, or a second name for files listed where they are)"
        if holder is not None:
            return "it leads into the folder of class %s: those files are listed once, for %s" % (
                printable(holder), printable(holder))
        if inside(real, self.src):
            return "it leads back into SRC%s" % ("" if name is None else ", outside the class folders")
        for earlier in self.followed:
            if inside(real, earlier) or (is_dir and inside(earlier, real)):
                return "it leads to files listed already through another link (%s)" % printable(earlier)
        return None

    def _link(self, path, name, is_dir):
        """Whether to follow the link `path`; records it in `links`."""
        real = os.path.realpath(path)
        problem = self._problem(real, name, is_dir)
        if problem is None:
            self.followed.append(real)
            where = "" if name is None else ": its files are listed for class %s" % printable(name)
            self.links.append(Link(path, real, True, "a link out of SRC, followed%s" % where))
            return True
        self.links.append(Link(path, real, False, problem + ": not followed"))
        return False

    def files(self, folder, name, recursive=True, on_hidden=None, on_folder=None):
        """Sorted paths of the files in `folder` (and below it when `recursive`), links resolved as the module
        doc says. `name`: the class `folder` belongs to (None: a flat SRC). Hidden entries (a leading '.') go to
        `on_hidden(path)`, the sub-folders of a walk that is not recursive to `on_folder(path)`; neither is
        listed."""
        found, pending = [], [folder]
        while pending:
            root = pending.pop()
            try:
                entries = sorted(os.scandir(root), key=lambda e: e.name)
            except OSError:
                continue
            below = []
            for entry in entries:
                path = os.path.join(root, entry.name)
                if entry.name.startswith("."):
                    if on_hidden:
                        on_hidden(path)
                    continue
                is_dir = entry.is_dir()                          # follows a link
                if is_dir and not recursive:
                    if on_folder:
                        on_folder(path)
                    continue
                if entry.is_symlink() and not self._link(path, name, is_dir):
                    continue
                (below if is_dir else found).append(path)
            pending.extend(reversed(below))
        return sorted(found)
