"""Reads PyTorch `torch.save` checkpoints into numpy arrays, without torch and without running code.

A `torch.save` file is a pickle, and unpickling can call any importable function (`os.system`...).
This reader unpickles with a *restricted* unpickler: the only globals it resolves are the few a
tensor checkpoint needs (`collections.OrderedDict`, torch's tensor rebuild functions and storage
types), each replaced by a local stand-in that builds numpy arrays. Anything else is refused with
`UnsafeCheckpointError`: it is never imported, let alone called (the unpickling runs to its end with
inert stand-ins, so that the refusal can say what the file holds, e.g. a whole pickled model). A few
data-only classes that training scripts save beside the weights (`argparse.Namespace`, `pathlib`
paths) become inert stand-ins too, and are accepted.

The weights are found where common tools put them: a bare state dict, or one under `state_dict`,
`model`, `model_state`, `model_state_dict`, `ema`, ... (see `WEIGHT_KEYS`); a `module.` (DataParallel)
or `_orig_mod.` (torch.compile) prefix on every name is removed.

Both layouts written by `torch.save` are read:

- the zip layout (PyTorch >= 1.6): `PREFIX/data.pkl` plus one raw record `PREFIX/data/KEY` per storage;
- the legacy layout (`_use_new_zipfile_serialization=False`, and every file saved before 1.6, such as
  the official ShuffleNet-Series checkpoints): pickled magic number, protocol version and system info,
  the pickled object, the pickled list of storage keys, then each storage as an int64 element count
  followed by its raw bytes.
"""
import collections
import io
import pickle
import struct
import tarfile
import zipfile

import numpy as np

from registry import paths
from registry.errors import ZooError

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001
ZIP_MAGIC = b"PK\x03\x04"

# storage type name -> numpy dtype (little endian; the byte order is applied on reading)
STORAGE_DTYPES = {
    "FloatStorage": "f4",
    "DoubleStorage": "f8",
    "HalfStorage": "f2",
    "BFloat16Storage": "bf16",  # no numpy dtype: widened to float32 on reading
    "LongStorage": "i8",
    "IntStorage": "i4",
    "ShortStorage": "i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}


class CheckpointError(ZooError):
    """The file is not a PyTorch checkpoint this reader understands."""


class UnsafeCheckpointError(CheckpointError):
    """The pickle references something a tensor checkpoint never needs: it is refused, not run."""


class _StorageType(object):
    """Stand-in for `torch.FloatStorage` & co: only its name (hence dtype) matters."""

    def __init__(self, name):
        self.name = name
        self.dtype = STORAGE_DTYPES[name]

    def __repr__(self):
        return "torch.%s" % self.name


class _Storage(object):
    """A storage's raw bytes, filled in when its record is read."""

    __slots__ = ("key", "dtype", "numel", "data")

    def __init__(self, key, dtype, numel):
        self.key, self.dtype, self.numel, self.data = key, dtype, numel, None


class _StorageView(object):
    """A legacy view into another storage: `numel` elements from element `offset` of `base`."""

    __slots__ = ("base", "offset", "numel")

    def __init__(self, base, offset, numel):
        self.base, self.offset, self.numel = base, offset, numel


class _PendingTensor(object):
    """A tensor whose storage bytes are not read yet; `materialize` turns it into a numpy array."""

    __slots__ = ("storage", "offset", "size", "stride")

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
    """Stand-in for torch._utils._rebuild_tensor(_v2): records the view, checks its arguments' types."""
    if not isinstance(storage, (_Storage, _StorageView)):
        raise CheckpointError("a tensor refers to %r instead of a storage" % (type(storage).__name__,))
    if not (_is_int(storage_offset) and isinstance(size, tuple) and isinstance(stride, tuple)
            and len(size) == len(stride) and all(_is_int(v) and v >= 0 for v in size + stride)
            and storage_offset >= 0):
        raise CheckpointError("a tensor has an invalid offset/size/stride (%r, %r, %r)"
                              % (storage_offset, size, stride))
    return _PendingTensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *unused):
    """Stand-in for torch._utils._rebuild_parameter: an nn.Parameter is its tensor."""
    if not isinstance(data, _PendingTensor):
        raise CheckpointError("a parameter wraps %r instead of a tensor" % (type(data).__name__,))
    return data


_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}
_ALLOWED_GLOBALS.update({("torch", name): _StorageType(name) for name in STORAGE_DTYPES})
# Data-only classes that training scripts save beside the weights (torchvision's reference scripts save
# their argparse arguments): read as inert stand-ins, never imported.
_DATA_CLASSES = {("argparse", "Namespace")} | {("pathlib", name) for name in (
    "Path", "PosixPath", "WindowsPath", "PurePath", "PurePosixPath", "PureWindowsPath")}


def allowed_globals():
    """The `module.name` globals a checkpoint may reference, sorted."""
    return sorted("%s.%s" % key for key in set(_ALLOWED_GLOBALS) | _DATA_CLASSES)


class _Inert(object):
    """Stands for an object of a class a pickle names: the class is never imported, nothing is called;
    the arguments and state the pickle gives are only recorded."""

    qualname = "?"

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):
        self.args, self.state, self.items = args, None, {}

    def __setstate__(self, state):
        self.state = state

    def __setitem__(self, key, value):
        self.items[key] = value

    def append(self, value):
        self.items[len(self.items)] = value

    def extend(self, values):
        for value in values:
            self.append(value)


def _inert_class(module, name):
    return type(str(name), (_Inert,), {"qualname": "%s.%s" % (module, name)})


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the globals of `_ALLOWED_GLOBALS` (and `_DATA_CLASSES` as inert stand-ins); any other
    global becomes an inert stand-in too, and `load` then refuses the file, saying what it holds.
    Storages come from `storage_factory`."""

    def __init__(self, file, source, storage_factory=None):
        super(RestrictedUnpickler, self).__init__(file)
        self.source = source
        self.storage_factory = storage_factory
        self.refused = []

    def find_class(self, module, name):
        if (module, name) in _ALLOWED_GLOBALS:
            return _ALLOWED_GLOBALS[(module, name)]
        if (module, name) not in _DATA_CLASSES and "%s.%s" % (module, name) not in self.refused:
            self.refused.append("%s.%s" % (module, name))
        return _inert_class(module, name)

    def load(self):
        try:
            obj = super(RestrictedUnpickler, self).load()
        except Exception:
            if not self.refused:
                raise
            obj = None
        if self.refused:
            holds = ("It holds %s." % describe(obj)) if obj is not None else ""
            if isinstance(obj, _Inert):
                holds += (" That is a whole pickled object (torch.save(model)), not a state dict: re-save its "
                          "weights where its class is defined, with torch.save(model.state_dict(), %r)." % self.source)
            raise UnsafeCheckpointError(
                "refusing to load %s: its pickle references %s, which a tensor checkpoint never needs (a pickle "
                "can run code on loading; this reader accepts only %s, and never imports or calls anything "
                "else). The file is not a plain PyTorch weights file, or it was tampered with. %s"
                % (self.source, ", ".join(self.refused), ", ".join(allowed_globals()), holds))
        return obj

    def persistent_load(self, pid):
        if (self.storage_factory is None or not isinstance(pid, tuple) or not pid
                or pid[0] != "storage"):
            raise UnsafeCheckpointError("refusing to load %s: unexpected persistent object %r (only tensor "
                                        "storages are accepted)" % (self.source, pid[:1] if isinstance(pid, tuple)
                                                                    else type(pid).__name__))
        return self.storage_factory(pid[1:])


def _storage_args(args, source):
    storage_type, key = args[0], args[1]
    numel = args[3]
    if not isinstance(storage_type, _StorageType) or not isinstance(key, str) or not _is_int(numel) or numel < 0:
        raise CheckpointError("%s: malformed storage reference %r" % (source, args[:4]))
    return storage_type, key, numel


def _array_of(storage, byteorder, source):
    """The numpy array of a storage's elements (its bytes were read)."""
    if storage.data is None:
        raise CheckpointError("%s: the data of storage %s is missing" % (source, storage.key))
    order = "<" if byteorder == "little" else ">"
    if storage.dtype == "bf16":
        raw = np.frombuffer(storage.data, dtype=order + "u2", count=storage.numel)
        return (raw.astype(np.uint32) << 16).view(np.float32)
    dtype = np.dtype(storage.dtype).newbyteorder(order) if storage.dtype not in ("?", "u1", "i1") \
        else np.dtype(storage.dtype)
    if len(storage.data) < storage.numel * dtype.itemsize:
        raise CheckpointError("%s: storage %s holds %d bytes, %d elements of %s need %d"
                              % (source, storage.key, len(storage.data), storage.numel, dtype.name,
                                 storage.numel * dtype.itemsize))
    return np.frombuffer(storage.data, dtype=dtype, count=storage.numel)


def _materialize(tensor, byteorder, source, name):
    storage, offset = tensor.storage, tensor.offset
    if isinstance(storage, _StorageView):
        if storage.offset + storage.numel > storage.base.numel:
            raise CheckpointError("%s: a storage view of %s lies outside it" % (source, name))
        offset += storage.offset
        storage = storage.base
    flat = _array_of(storage, byteorder, source)
    if any(s == 0 for s in tensor.size):
        return np.zeros(tensor.size, dtype=flat.dtype.newbyteorder("="))
    last = offset + sum((s - 1) * st for s, st in zip(tensor.size, tensor.stride))
    if last >= storage.numel:
        raise CheckpointError("%s: tensor %s (size %s, stride %s, offset %d) reads past its storage of %d elements"
                              % (source, name, list(tensor.size), list(tensor.stride), offset, storage.numel))
    view = np.lib.stride_tricks.as_strided(flat[offset:], shape=tensor.size,
                                           strides=[st * flat.itemsize for st in tensor.stride], writeable=False)
    return np.array(view, dtype=flat.dtype.newbyteorder("="))


def _materialize_all(obj, byteorder, source, name="checkpoint"):
    """Replaces every pending tensor in nested dicts/lists/tuples by its numpy array."""
    if isinstance(obj, _PendingTensor):
        return _materialize(obj, byteorder, source, name)
    if isinstance(obj, dict):
        items = [(k, _materialize_all(v, byteorder, source, k if isinstance(k, str) else name))
                 for k, v in obj.items()]
        return collections.OrderedDict(items)
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialize_all(v, byteorder, source, name) for v in obj)
    return obj


def _load_zip(path):
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pickles) != 1:
            raise CheckpointError("%s is a zip file but not a PyTorch checkpoint (no single data.pkl in it)" % path)
        prefix = pickles[0][:-len("data.pkl")]
        byteorder = "little"
        if prefix + "byteorder" in names:
            byteorder = archive.read(prefix + "byteorder").decode("ascii", "replace").strip()
            if byteorder not in ("little", "big"):
                raise CheckpointError("%s: unknown byte order %r" % (path, byteorder))
        storages = {}

        def storage_factory(args):
            storage_type, key, numel = _storage_args(args, path)
            if key not in storages:
                storages[key] = _Storage(key, storage_type.dtype, numel)
            return storages[key]

        obj = RestrictedUnpickler(io.BytesIO(archive.read(pickles[0])), path, storage_factory).load()
        for key, storage in storages.items():
            record = prefix + "data/" + key
            if record not in names:
                raise CheckpointError("%s: the data record of storage %s is missing" % (path, key))
            storage.data = archive.read(record)
    return _materialize_all(obj, byteorder, path)


def _load_legacy(path):
    with open(path, "rb") as f:
        def header(what):
            try:
                return RestrictedUnpickler(f, path).load()
            except UnsafeCheckpointError:
                raise
            except Exception as err:  # noqa: BLE001 -- anything unreadable is "not a checkpoint"
                raise CheckpointError("%s is not a PyTorch checkpoint (cannot read its %s: %s)" % (path, what, err))

        magic = header("magic number")
        if magic != LEGACY_MAGIC_NUMBER:
            raise CheckpointError("%s is not a PyTorch checkpoint (no torch.save magic number)" % path)
        protocol = header("protocol version")
        if protocol != LEGACY_PROTOCOL_VERSION:
            raise CheckpointError("%s: unsupported torch.save protocol version %r" % (path, protocol))
        sys_info = header("system info")
        byteorder = "little"
        if isinstance(sys_info, dict) and sys_info.get("little_endian") is False:
            byteorder = "big"
        storages = {}

        def storage_factory(args):
            storage_type, key, numel = _storage_args(args, path)
            view_metadata = args[4] if len(args) > 4 else None
            if key not in storages:
                storages[key] = _Storage(key, storage_type.dtype, numel)
            if view_metadata is None:
                return storages[key]
            view_key, offset, view_size = view_metadata
            if not (_is_int(offset) and _is_int(view_size) and offset >= 0 and view_size >= 0):
                raise CheckpointError("%s: malformed storage view %r" % (path, view_metadata))
            return _StorageView(storages[key], offset, view_size)

        obj = RestrictedUnpickler(f, path, storage_factory).load()
        keys = header("storage keys")
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise CheckpointError("%s: malformed storage key list" % path)
        order = "<" if byteorder == "little" else ">"
        for key in keys:
            if key not in storages:
                raise CheckpointError("%s: storage %s is listed but never used" % (path, key))
            storage = storages[key]
            count_bytes = f.read(8)
            if len(count_bytes) != 8:
                raise CheckpointError("%s is truncated: storage %s is missing" % (path, key))
            (count,) = struct.unpack(order + "q", count_bytes)
            itemsize = 2 if storage.dtype == "bf16" else np.dtype(storage.dtype).itemsize
            if count != storage.numel:
                raise CheckpointError("%s: storage %s has %d elements, the pickle says %d"
                                      % (path, key, count, storage.numel))
            storage.data = f.read(count * itemsize)
            if len(storage.data) != count * itemsize:
                raise CheckpointError("%s is truncated inside storage %s" % (path, key))
        missing = set(storages) - set(keys)
        if missing:
            raise CheckpointError("%s: the data of storage(s) %s is missing" % (path, ", ".join(sorted(missing))))
    return _materialize_all(obj, byteorder, path)


def load(path):
    """The object saved by `torch.save` at `path`, tensors as numpy arrays (dicts as OrderedDicts)."""
    path = paths.require_file(path, "checkpoint file", error=CheckpointError)
    with open(path, "rb") as f:
        start = f.read(4)
    if start == ZIP_MAGIC:
        return _load_zip(path)
    if tarfile.is_tarfile(path):
        raise CheckpointError("%s is a tar archive: the pre-0.4 torch.save tar layout is not supported; "
                              "re-save it with a recent torch" % path)
    return _load_legacy(path)


WEIGHT_KEYS = ("state_dict", "model", "model_state", "model_state_dict", "module", "net", "network", "ema",
               "model_ema", "state_dict_ema", "ema_state_dict")
STRIPPED_PREFIXES = ("module.", "_orig_mod.")   # nn.DataParallel / DistributedDataParallel, torch.compile


def _is_tensor(value):
    return isinstance(value, (np.ndarray, _PendingTensor))


def _is_state_dict(obj):
    return isinstance(obj, dict) and bool(obj) and all(isinstance(k, str) and _is_tensor(v) for k, v in obj.items())


def _kind(value):
    if _is_tensor(value):
        return "tensor"
    if isinstance(value, _Inert):
        return "%s object" % value.qualname
    if isinstance(value, dict):
        tensors = sum(_is_tensor(v) for v in value.values())
        return "dict of %d entries%s" % (len(value), ", %d tensors" % tensors if tensors else "")
    return type(value).__name__


def describe(obj, limit=12):
    """What a loaded checkpoint object is, for messages: its type, and a dict's keys with their kinds."""
    if isinstance(obj, _Inert):
        return "a pickled %s object" % obj.qualname
    if isinstance(obj, dict):
        keys = ["%s (%s)" % (k, _kind(v)) for k, v in list(obj.items())[:limit]]
        more = ", ... %d more" % (len(obj) - limit) if len(obj) > limit else ""
        return "a dict with keys %s%s" % (", ".join(keys), more) if obj else "an empty dict"
    return "a %s" % _kind(obj)


def _strip_prefixes(state):
    state = collections.OrderedDict(state)
    if "n_averaged" in state and len(state) > 1:   # torch.optim.swa_utils.AveragedModel (torchvision's EMA)
        del state["n_averaged"]
    while True:
        prefix = next((p for p in STRIPPED_PREFIXES if all(k.startswith(p) for k in state)), None)
        if prefix is None:
            return state
        state = collections.OrderedDict((k[len(prefix):], v) for k, v in state.items())


def find_weights(obj, source, key=None):
    """(state dict, where it was found) in a loaded checkpoint: `obj` itself, or its entry `key` (default: the
    first of WEIGHT_KEYS that holds {name: tensor}, also one level down, e.g. model -> state_dict). Raises a
    CheckpointError saying what the file holds when there is none."""
    fix = ("Re-save the weights with torch.save(model.state_dict(), F)%s." %
           ("" if key else ", or name the entry holding them with --key"))
    if key is not None:
        if not isinstance(obj, dict) or key not in obj:
            raise CheckpointError("%s has no entry %r; it holds %s. %s" % (source, key, describe(obj), fix))
        if not _is_state_dict(obj[key]):
            raise CheckpointError("%s: entry %r is %s, not a state dict {name: tensor}. %s"
                                  % (source, key, describe(obj[key]), fix))
        return _strip_prefixes(obj[key]), "entry %r" % key
    if _is_state_dict(obj):
        return _strip_prefixes(obj), "the top level"
    if isinstance(obj, dict):
        for name in WEIGHT_KEYS:
            value = obj.get(name)
            if _is_state_dict(value):
                return _strip_prefixes(value), "entry %r" % name
            if isinstance(value, dict):
                inner = next((k for k in WEIGHT_KEYS if _is_state_dict(value.get(k))), None)
                if inner:
                    return _strip_prefixes(value[inner]), "entry %r -> %r" % (name, inner)
    raise CheckpointError("%s holds no state dict: it holds %s, and none of %s is a {name: tensor} dict. %s"
                          % (source, describe(obj), "/".join(WEIGHT_KEYS), fix))


def load_weights(path, key=None):
    """(`{name: numpy array}`, where in the file it was found) of a checkpoint (see `find_weights`)."""
    return find_weights(load(path), path, key)


def load_state_dict(path, key=None):
    """`{name: numpy array}` of a checkpoint: a bare state dict, or one nested where common tools put it
    (`find_weights`), with a `module.` / `_orig_mod.` prefix on every key removed."""
    return load_weights(path, key)[0]
