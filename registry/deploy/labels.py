"""Class names of a model: its data set's `labels.txt` (TF-slim's `id:name` lines, ids = class index +
label_offset), the model dir's copy, or ImageNet's 1000 classes (bundled, no download)."""
import os

from registry import paths
from registry.errors import ZooError

IMAGENET_NUM_CLASSES = 1000
LABELS_FILE = "labels.txt"


def imagenet_classes():
    """[(synset, readable name)] of ImageNet-1k in class-index order."""
    from registry.deploy.imagenet_classes import CLASSES
    return list(CLASSES)


def read_labels_file(path):
    """{id: name} from a labels file of `id:name` lines (as written by TF-slim and `zoo-run data build`)."""
    labels = {}
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError as err:
        raise ZooError("cannot read labels file %s: %s" % (path, err.strerror))
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        key, sep, name = line.partition(":")
        try:
            labels[int(key)] = name.strip()
        except ValueError:
            sep = ""
        if not sep:
            raise ZooError("labels file %s line %d is %r; expected 'id:name' lines such as '1:tench'"
                           % (path, number, line))
    return labels


def write_imagenet_labels(model_dir, label_offset=1):
    """MODEL_DIR/labels.txt with ImageNet's synsets (`1:n01440764` ..., as a data build writes them)."""
    path = os.path.join(model_dir, LABELS_FILE)
    with open(path, "w") as f:
        for index, (synset, _) in enumerate(imagenet_classes()):
            f.write("%d:%s\n" % (index + label_offset, synset))
    return path


def resolve_labels_path(labels=None, model_dir=None):
    """The labels file to use: `labels` (a file or a data dir holding labels.txt), else the model dir's."""
    if labels:
        path = os.path.join(labels, LABELS_FILE) if os.path.isdir(labels) else labels
        return paths.require_file(path, "labels file", " (pass a labels.txt or a data dir holding one)")
    if model_dir and os.path.isfile(os.path.join(model_dir, LABELS_FILE)):
        return os.path.join(model_dir, LABELS_FILE)
    return None


def class_names(num_classes, label_offset=1, labels=None, model_dir=None):
    """(names by class index, where they come from). ImageNet synsets get their readable names; without
    a labels file, 1000 classes are taken to be ImageNet's; otherwise classes are named `class N`."""
    path = resolve_labels_path(labels, model_dir)
    if path:
        readable = dict(imagenet_classes())  # synset names (an ImageNet data build) become readable
        table = read_labels_file(path)
        names = []
        for index in range(num_classes):
            name = table.get(index + label_offset)
            if name is None:
                name = "class %d" % index
            elif name in readable:
                name = "%s (%s)" % (readable[name], name)
            names.append(name)
        return names, path
    if num_classes == IMAGENET_NUM_CLASSES:
        return ["%s (%s)" % (name, synset) for synset, name in imagenet_classes()], "ImageNet-1k classes (bundled)"
    return ["class %d" % index for index in range(num_classes)], None
