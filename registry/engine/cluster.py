"""The cluster a `zoo-run train` process belongs to, from what a scheduler sets: a TF_CONFIG (written by hand, by
the `--workers` launcher, or per pod by Kubeflow's TFJob) or Slurm's `srun` variables. One description for the
engine: the training workers' addresses and this process's index among them (index 0 is the chief), or the
evaluator role.

TF_CONFIG task types (Kubeflow TFJob replica types):

    chief       one of the training replicas and the one that writes the checkpoints and records: worker 0
    worker      the other training replicas, after the chief: worker i is index i + 1 with a chief, else i
    evaluator   joins no collective; evaluates each checkpoint of the model dir (registry.engine.evaluator_task);
                TFJob leaves it out of the cluster it writes (it is not part of the training cluster)
    ps          parameter servers: not supported (this runner all-reduces), a clear error

Slurm (`srun zoo-run train ...`, one task per node): the nodes come from SLURM_STEP_NODELIST (else
SLURM_JOB_NODELIST) in Slurm's hostlist syntax (`node[006,011-013]`), expanded by the python-hostlist library;
task i (SLURM_PROCID) is worker i on node i of that list (one task per node, so the task and node orders agree).
The port is the same on every node, derived from SLURM_JOB_ID and SLURM_STEP_ID (`slurm_port`) unless `--port`
gives it. A job step of one task trains alone.
"""
import collections
import json

from registry.errors import ZooError

Cluster = collections.namedtuple("Cluster", "workers index")
Cluster.__doc__ = """workers: the training workers' "host:port" (the chief first); index: this process's."""
EvaluatorTask = collections.namedtuple("EvaluatorTask", "workers")
EvaluatorTask.__doc__ = """The TF_CONFIG evaluator task; workers: the training workers' "host:port" (their number
sets the global batch, and so the schedule whose last step ends the evaluator)."""

TASK_TYPES = ("chief", "worker", "evaluator")
PORT_BASE, PORT_SPAN = 20000, 10000   # below Linux's ephemeral ports (32768-60999)
NODELIST_VARIABLES = ("SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST", "SLURM_NODELIST")
NTASKS_VARIABLES = ("SLURM_STEP_NUM_TASKS", "SLURM_NTASKS")
TASKS_PER_NODE_VARIABLES = ("SLURM_STEP_TASKS_PER_NODE", "SLURM_TASKS_PER_NODE")
STEP_VARIABLES = ("SLURM_STEP_ID", "SLURM_STEPID")
JOB_VARIABLES = ("SLURM_JOB_ID", "SLURM_JOBID")
SLURM_SIGNS = JOB_VARIABLES + STEP_VARIABLES + ("SLURM_PROCID",)
TF_CONFIG_FORM = ('{"cluster": {"chief": ["host:port"], "worker": ["host:port", ...]}, "task": {"type": "worker", '
                  '"index": i}} (chief optional; task types chief, worker, evaluator)')


def make_tf_config(workers, index):
    """The TF_CONFIG (JSON text) of training worker `index` of `workers`, worker 0 the chief."""
    return json.dumps({"cluster": {"worker": list(workers)}, "task": {"type": "worker", "index": index}})


def from_tf_config(text):
    """The Cluster of this task (None when the training has one worker: it trains alone) or its EvaluatorTask,
    from TF_CONFIG `text`. Raises ZooError naming what does not fit."""
    try:
        config = json.loads(text)
        jobs = {name: list(addresses) for name, addresses in config["cluster"].items()}
        task = config["task"]
        kind, index = task["type"], int(task.get("index", 0))
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise ZooError("TF_CONFIG is not valid (%s): expected %s, got %s" % (err, TF_CONFIG_FORM, text))
    if "ps" in jobs or kind == "ps":
        raise ZooError("TF_CONFIG has parameter servers ('ps'): this runner trains with all-reduce, with no "
                       "parameter server. Use 'chief' and 'worker' replicas only (in a TFJob: no PS replica spec)")
    unknown = sorted(set(jobs) - set(TASK_TYPES)) + ([kind] if kind not in TASK_TYPES else [])
    if unknown:
        raise ZooError("TF_CONFIG: this runner knows the task types %s; got %s (cluster jobs %s, task type %r)"
                       % ("/".join(TASK_TYPES), ", ".join(map(repr, unknown)), sorted(jobs), kind))
    for name in ("chief", "evaluator"):
        if len(jobs.get(name, [])) > 1:
            raise ZooError("TF_CONFIG: at most one %s task, got %d (%s)" % (name, len(jobs[name]), jobs[name]))
    chiefs = jobs.get("chief", [])
    workers = chiefs + jobs.get("worker", [])
    if (kind != "evaluator" or kind in jobs) and not 0 <= index < len(jobs.get(kind, [])):
        raise ZooError("TF_CONFIG task index %d is outside the %d %s of the cluster"
                       % (index, len(jobs.get(kind, [])), "workers" if kind == "worker" else kind + " tasks"))
    if not workers:
        raise ZooError("TF_CONFIG names no 'chief' or 'worker' task to train: %s" % text)
    if kind == "evaluator":
        return EvaluatorTask(workers)
    index = index + len(chiefs) if kind == "worker" else 0
    return Cluster(workers, index) if len(workers) > 1 else None


def in_slurm(environ):
    """Whether `environ` comes from a Slurm job (a batch script or an srun task)."""
    return any(environ.get(name, "").strip() for name in SLURM_SIGNS)


def _first(environ, names):
    for name in names:
        value = environ.get(name, "").strip()
        if value:
            return name, value
    return None, None


def _integer(name, value):
    try:
        return int(value)
    except ValueError:
        raise ZooError("Slurm variable %s=%r is not an integer; srun sets it, do not set it by hand" % (name, value))


def slurm_port(environ):
    """The port every task of this job step listens on: PORT_BASE + (10 * SLURM_JOB_ID + SLURM_STEP_ID) mod
    PORT_SPAN, the same on every node of the step, other for the next step or job. None without SLURM_JOB_ID."""
    job_name, job = _first(environ, JOB_VARIABLES)
    if job is None:
        return None
    step_name, step = _first(environ, STEP_VARIABLES)
    step = _integer(step_name, step) if step is not None and step.isdigit() else 0
    return PORT_BASE + (10 * _integer(job_name, job) + step) % PORT_SPAN


def _expand(name, text):
    import hostlist
    try:
        return hostlist.expand_hostlist(text)
    except hostlist.BadHostlist as err:
        raise ZooError("Slurm variable %s=%r is not a hostlist Slurm writes (%s)" % (name, text, err))


def from_slurm(environ, port=None):
    """The Cluster of this srun task (None when the step has one task, or this is a job's batch script of one
    task), from Slurm's variables in `environ`; `port` overrides slurm_port(). Raises ZooError naming the missing
    or inconsistent variables, and how to start the tasks."""
    count_name, count = _first(environ, NTASKS_VARIABLES)
    count = _integer(count_name, count) if count is not None else None
    nodes_count = _first(environ, ("SLURM_STEP_NUM_NODES", "SLURM_JOB_NUM_NODES", "SLURM_NNODES"))
    _, step = _first(environ, STEP_VARIABLES)
    if step is None or step == "batch":   # the batch script itself, not a task srun started
        several = (count or 1) > 1 or (nodes_count[1] is not None and _integer(*nodes_count) > 1)
        if several:
            raise ZooError("this is the batch script of a Slurm job of %s, not a task started by srun (no "
                           "SLURM_STEP_ID): start one task per node with `srun --ntasks-per-node=1 zoo-run train "
                           "...`" % ("%d tasks" % count if count else "%s nodes" % nodes_count[1]))
        return None
    if count == 1:
        return None
    missing = [name for name in ("SLURM_PROCID",) if not environ.get(name, "").strip()]
    if count is None:
        missing.append(" or ".join(NTASKS_VARIABLES))
    nodes_name, nodes = _first(environ, NODELIST_VARIABLES)
    if nodes is None:
        missing.append(" or ".join(NODELIST_VARIABLES))
    if port is None and slurm_port(environ) is None:
        missing.append("SLURM_JOB_ID (or give --port)")
    if missing:
        raise ZooError("Slurm job step %s: %s not set, so the cluster of this task is unknown. srun sets them for "
                       "each task: start the run as `srun --ntasks-per-node=1 zoo-run train ...` inside the "
                       "allocation (or unset the SLURM_* variables to train alone)" % (step, ", ".join(missing)))
    index = _integer("SLURM_PROCID", environ["SLURM_PROCID"])
    hosts = _expand(nodes_name, nodes)
    per_node_name, per_node = _first(environ, TASKS_PER_NODE_VARIABLES)
    if per_node is not None:
        import hostlist
        try:
            per_node = hostlist.parse_slurm_tasks_per_node(per_node)
        except hostlist.BadHostlist as err:
            raise ZooError("Slurm variable %s=%r cannot be read (%s)" % (per_node_name, per_node, err))
    if len(hosts) != count or (per_node is not None and set(per_node) != {1}):
        raise ZooError("this Slurm step runs %d tasks on %d nodes (%s=%s%s): zoo-run needs one task per node (each "
                       "task uses all of its node's devices). Start it with `srun --ntasks-per-node=1 zoo-run train "
                       "...`" % (count, len(hosts), nodes_name, nodes, "" if per_node is None else ", %s=%s" % (
                           per_node_name, environ[per_node_name])))
    if not 0 <= index < count:
        raise ZooError("SLURM_PROCID=%d is outside the %d tasks of the step" % (index, count))
    node_id = environ.get("SLURM_NODEID", "").strip()
    if node_id and _integer("SLURM_NODEID", node_id) != index:
        raise ZooError("SLURM_PROCID=%d runs on SLURM_NODEID=%s: with one task per node they agree; start the step "
                       "with `srun --ntasks-per-node=1` and the default (block) distribution" % (index, node_id))
    port = port if port is not None else slurm_port(environ)
    return Cluster(["%s:%d" % (host, port) for host in hosts], index)


def describe_slurm(environ, cluster):
    """One line on what the Slurm variables made of this process."""
    _, job = _first(environ, JOB_VARIABLES)
    _, step = _first(environ, STEP_VARIABLES)
    if cluster is None:
        return "Slurm job %s: one task, so this run trains as one process" % job
    return "Slurm job %s step %s: task %d of %d (multi-worker training over %s)" % (
        job, step, cluster.index, len(cluster.workers), ", ".join(cluster.workers))
