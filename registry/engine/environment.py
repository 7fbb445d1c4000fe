"""The launch environment: the one place that reads the environment variables which change what is
trained, decides whether each applies to this run, and says so at start.

    RANK_SIZE, RANK_ID, RANK_TABLE_FILE   the Ascend launcher's data parallel: applied with --device npu
                                          (NPUDistributedOptimizer, each rank trains on its shard of the
                                          files); on cpu/gpu they are ignored, with a note, and the run
                                          trains on all the data as one worker
    ASCEND_DEVICE_ID, DEVICE_ID           the Ascend card npu_bridge opens: npu only, else ignored with a note
    TF_CONFIG                             multi-worker training (`zoo-run train` on cpu/gpu; chief, worker and
                                          evaluator tasks, registry.engine.cluster); an error with --device npu;
                                          ignored with a note by eval and perf (they run locally)
    SLURM_*                               without TF_CONFIG: an srun task of a multi-worker training (`zoo-run
                                          train` on cpu/gpu, registry.engine.cluster); ignored with a note else
    CUDA_VISIBLE_DEVICES, TF_XLA_FLAGS    read by CUDA / TensorFlow themselves: shown
    TF_ENABLE_ONEDNN_OPTS                 TensorFlow 2.x's oneDNN CPU kernels: zoo-run sets it to 1 unless it is set
                                          (registry/onednn.py); shown with who set it; ignored with a note on lane
                                          tf1 (TensorFlow 1.15 does not read it)
    TF_ENABLE_AUTO_MIXED_PRECISION        read only by NVIDIA's TensorFlow containers, not by the stock builds
                                          this project runs on: ignored with a note (use --precision_mode)

`devices.resolve` reads it for the device settings; the runner's data sharding (the input context it
gives the input pipeline) comes from those settings, never from the variables themselves.
"""
import collections
import os

from registry import onednn
from registry.engine import cluster as clusters
from registry.errors import ZooError

Cluster = clusters.Cluster
make_tf_config = clusters.make_tf_config
Launch = collections.namedtuple("Launch", "rank_size rank_id cluster applied ignored notes evaluator",
                                defaults=(None,))
Launch.__doc__ = """rank_size, rank_id: the NPU ranks (1, 0 off the NPU); cluster: the Cluster of a multi-worker
train (from TF_CONFIG or Slurm), or None; applied / ignored: {variable: value}; notes: one line per variable set;
evaluator: the TF_CONFIG EvaluatorTask when this process is a TFJob's evaluator, else None."""

RANK_VARIABLES = ("RANK_SIZE", "RANK_ID", "RANK_TABLE_FILE")
CARD_VARIABLES = ("ASCEND_DEVICE_ID", "DEVICE_ID")
SHOWN_VARIABLES = {"CUDA_VISIBLE_DEVICES": "the GPUs CUDA lets TensorFlow see",
                   "TF_XLA_FLAGS": "XLA settings, read by TensorFlow"}
CONTAINER_ONLY = ("TF_ENABLE_AUTO_MIXED_PRECISION",)
SLURM_SHOWN = ("SLURM_JOB_ID", "SLURM_STEP_ID", "SLURM_PROCID", "SLURM_NODEID", "SLURM_STEP_NODELIST",
               "SLURM_JOB_NODELIST", "SLURM_STEP_NUM_TASKS", "SLURM_NTASKS", "SLURM_STEP_TASKS_PER_NODE")


def cluster_from_env(environ=None):
    """The TF_CONFIG cluster (workers, this task's index), an EvaluatorTask, or None when TF_CONFIG is unset or
    trains on one worker (registry.engine.cluster reads it)."""
    environ = os.environ if environ is None else environ
    text = environ.get("TF_CONFIG")
    return clusters.from_tf_config(text) if text else None


def check_local_launch(device, environ=None):
    """Raises a ZooError when `zoo-run train --workers N` (local workers, each with its own TF_CONFIG) cannot
    start: TF_CONFIG already set, or the NPU (which has its own launch)."""
    environ = os.environ if environ is None else environ
    if environ.get("TF_CONFIG"):
        raise ZooError("--workers starts local workers with their own TF_CONFIG; unset TF_CONFIG, or drop "
                       "--workers and start each worker of the TF_CONFIG cluster yourself")
    if device == "npu":
        raise ZooError("--workers is for CPU/GPU; on Ascend use the RANK_SIZE/RANK_TABLE_FILE launch "
                       "(test/train_full_8p.sh)")


def _ranks(environ):
    size, rank = environ.get("RANK_SIZE", "").strip() or "1", environ.get("RANK_ID", "").strip() or "0"
    try:
        size, rank = int(size), int(rank)
    except ValueError:
        raise ZooError("RANK_SIZE=%r / RANK_ID=%r must be integers; set them as the Ascend launcher does "
                       "(RANK_SIZE=8 RANK_ID=0..7) or unset them for a single card"
                       % (environ.get("RANK_SIZE"), environ.get("RANK_ID")))
    if size < 1 or not 0 <= rank < size:
        raise ZooError("RANK_ID=%d is outside 0..RANK_SIZE-1 (RANK_SIZE=%d); set RANK_ID to this card's rank"
                       % (rank, size))
    if size > 1 and not environ.get("RANK_TABLE_FILE"):
        raise ZooError("RANK_SIZE=%d needs RANK_TABLE_FILE (the HCCL rank table JSON of the cards)" % size)
    return size, rank


def _pairs(values):
    return ", ".join("%s=%s" % item for item in values.items())


def read(device, command="train", environ=None, port=None):
    """The Launch of a `command` ('train', 'eval' or 'perf') on `device` ('cpu', 'gpu' or 'npu'): what each
    variable set in `environ` (default os.environ) does. Raises ZooError for values that cannot apply."""
    environ = os.environ if environ is None else environ
    present = lambda names: collections.OrderedDict((n, environ[n]) for n in names if environ.get(n, "") != "")
    applied, ignored, notes = collections.OrderedDict(), collections.OrderedDict(), []
    rank_size, rank_id, cluster = 1, 0, None

    ranks, cards = present(RANK_VARIABLES), present(CARD_VARIABLES)
    if device == "npu":
        rank_size, rank_id = _ranks(environ)
        if ranks:
            applied.update(ranks)
            notes.append("%s: NPU data parallel, rank %d of %d%s" % (
                _pairs(ranks), rank_id, rank_size, " (this rank trains on its shard of the files)"
                if rank_size > 1 and command == "train" else ""))
        if cards:
            applied.update(cards)
            notes.append("%s: the Ascend card npu_bridge opens" % _pairs(cards))
    else:
        if ranks:
            ignored.update(ranks)
            notes.append("%s ignored: the Ascend launcher's data-parallel settings apply with --device npu only; "
                         "this %s run uses all the data as one worker" % (_pairs(ranks), device))
        if cards:
            ignored.update(cards)
            notes.append("%s ignored: it selects an Ascend card, and the device is %s" % (_pairs(cards), device))

    tf_config = present(["TF_CONFIG"])
    slurm = clusters.in_slurm(environ)
    evaluator = None
    if tf_config:
        if command != "train":
            ignored.update(tf_config)
            notes.append("TF_CONFIG ignored: `zoo-run %s` runs in this process only" % command)
        else:
            cluster = cluster_from_env(environ)
            if isinstance(cluster, clusters.EvaluatorTask):
                evaluator, cluster = cluster, None
            if (cluster or evaluator) and device == "npu":
                raise ZooError("TF_CONFIG multi-worker runs are for CPU/GPU; on Ascend use RANK_SIZE/RANK_TABLE_FILE "
                               "(NPUDistributedOptimizer), and unset TF_CONFIG")
            applied.update(tf_config)
            notes.append("TF_CONFIG: %s" % (
                "the evaluator of %d training workers (evaluates each checkpoint of the model dir)"
                % len(evaluator.workers) if evaluator else "worker %d of %d (%smulti-worker training)" % (
                    cluster.index, len(cluster.workers), "the chief, " if cluster.index == 0 else "")
                if cluster else "a single worker, so this run trains as one process"))
        if slurm:
            notes.append("Slurm variables ignored: TF_CONFIG is set and names the cluster")
    elif slurm and command == "train" and device != "npu":
        cluster = clusters.from_slurm(environ, port)
        applied.update(present(sorted(name for name in environ if name in SLURM_SHOWN)))
        notes.append(clusters.describe_slurm(environ, cluster))
    elif slurm:
        notes.append("Slurm variables ignored: %s" % ("`zoo-run %s` runs in this process only" % command
                                                      if command != "train" else "on Ascend the RANK_SIZE/"
                                                      "RANK_TABLE_FILE launch applies"))

    for name, value in present(SHOWN_VARIABLES).items():
        applied[name] = value
        notes.append("%s=%s: %s" % (name, value, SHOWN_VARIABLES[name]))
    for name, value in present([onednn.VARIABLE]).items():
        if not onednn.tensorflow_reads_variable():
            ignored[name] = value
            notes.append("%s=%s ignored: TensorFlow 1.15 does not read it (lane tf1; its stock build has no oneDNN "
                         "kernels)" % (name, value))
        else:
            applied[name] = value
            notes.append("%s=%s (set by %s): %s" % (
                name, value, "zoo-run" if onednn.origin(environ) == "zoo-run" else "the environment",
                "TensorFlow leaves its oneDNN CPU kernels off" if value == "0" else
                "TensorFlow uses its oneDNN CPU kernels where the CPU has them (%s)" % onednn.WHY))
    for name, value in present(CONTAINER_ONLY).items():
        ignored[name] = value
        notes.append("%s=%s ignored: only NVIDIA's TensorFlow containers read it; use --precision_mode "
                     "allow_mix_precision for mixed precision" % (name, value))
    return Launch(rank_size, rank_id, cluster, applied, ignored, ["environment: " + note for note in notes], evaluator)
