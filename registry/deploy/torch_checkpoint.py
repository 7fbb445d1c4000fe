"""Reads PyTorch `torch.save` checkpoints into numpy arrays, without torch and without running code.

A `torch.save` file is a pickle, and unpickling can call any importable function (`os.system`...).
This reader unpickles with a *restricted* unpickler: the only globals it resolves are the few a
tensor checkpoint needs (`collections.OrderedDict`, torch's tensor rebuild functions and storage
types), each replaced by a local stand-in that builds numpy arrays. Anything else is refused with
`UnsafeCheckpointError` before it is imported, let alone called.

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


def allowed_globals():
    """The `module.name` globals a checkpoint may reference, sorted."""
    return sorted("%s.%s" % key for key in _ALLOWED_GLOBALS)


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the globals of `_ALLOWED_GLOBALS`; storages come from `storage_factory`."""

    def __init__(self, file, source, storage_factory=None):
        super(RestrictedUnpickler, self).__init__(file)
        self.source = source
        self.storage_factory = storage_factory

    def find_class(self, module, name):
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafeCheckpointError(
                "refusing to load %s: its pickle references %s.%s, which a tensor checkpoint never needs "
                "(a pickle can run code on loading; this reader only accepts %s). The file is not a plain "
                "PyTorch weights file, or it was tampered with." % (self.source, module, name,
                                                                    ", ".join(allowed_globals())))

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


def load_state_dict(path):
    """`{name: numpy array}` of a checkpoint: `{'state_dict': ...}` (the official files) or a bare state
    dict; a `module.` prefix on every key (nn.DataParallel) is removed."""
    obj = load(path)
    state = obj
    if isinstance(obj, dict) and "state_dict" in obj:
        state = obj["state_dict"]
    if not isinstance(state, dict) or not state:
        keys = ", ".join(sorted(map(str, obj))) if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointError("%s holds no state dict (expected {'state_dict': {name: tensor}} or "
                              "{name: tensor}; found %s)" % (path, keys))
    bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, np.ndarray)]
    if bad:
        raise CheckpointError("%s: state dict entry %r is not a tensor" % (path, bad[0]))
    if all(k.startswith("module.") for k in state):
        state = collections.OrderedDict((k[len("module."):], v) for k, v in state.items())
    return state
