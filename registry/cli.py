"""`zoo-run`: train, evaluate and benchmark any network registered in `modelzoo.models`."""
import argparse
import os
import shlex
import sys

from registry import discovery, hparams as hp, paths, spec
from registry.errors import ZooError

EPILOG = """examples:
  zoo-run list
  zoo-run describe shufflenetv1_g3
  zoo-run train shufflenetv1_g3                      # bundled demo data, demo preset
  zoo-run train shufflenetv1_g3 --data_path /data/imagenet-tfrecord --model_dir runs/g3
  zoo-run eval  shufflenetv1_g3 --data_path /data/imagenet-tfrecord --model_dir runs/g3
  zoo-run data build ~/imagenet/train ~/imagenet-tfrecord --split train
  zoo-run data check ~/imagenet-tfrecord             # every record decoded once, each bad one named

Networks are plugins: any installed distribution that publishes an object in the
'modelzoo.models' entry-point group is listed and run the same way."""


def _quiet_tensorflow():
    from registry import tf_compat
    return tf_compat.quiet()


LATENCY_STEPS = 300  # single-image runs of `zoo-run perf --latency`


def _level_text(level):
    return " ".join("%s:%s" % (k.replace("Status", ""), v) for k, v in level.items())


def cmd_list(args):
    plugins = discovery.load_all()
    if not plugins:
        print("No network is registered in the %r entry-point group; install a plugin "
              "(e.g. `pip install .` in this repository)." % spec.ENTRY_POINT_GROUP)
        return 1
    rows = [("NAME", "DESCRIPTION", "LEVEL", False)]
    for p in plugins:
        if p.clash:
            rows.append((p.name, "CLASH: %s" % p.error, "", True))
        elif p.broken:
            rows.append((p.name, "BROKEN (%s): %s" % (p.target, p.error), "", True))
        else:
            rows.append((p.name, p.obj.metadata["description"], _level_text(p.obj.level), False))
    widths = [max(len(r[i]) for r in rows if not r[3]) for i in range(2)]
    for name, description, level, unusable in rows:
        if unusable:
            print("%-*s  %s" % (widths[0], name, description))
        else:
            print("%-*s  %-*s  %s" % (widths[0], name, widths[1], description, level))
    clashes = sum(p.clash for p in plugins)
    broken = sum(p.broken for p in plugins) - clashes
    problems = ["%d broken" % broken] * bool(broken) + ["%d name clash(es)" % clashes] * bool(clashes)
    print("\n%d network(s) registered%s." % (len(plugins), "".join(", " + text for text in problems)))
    return 0


def _format_count(n):
    return "{:,}".format(n) if isinstance(n, int) else str(n)


def cmd_describe(args):
    model = discovery.get_model(args.name)
    params = hp.resolve(model, args.preset, args.config, args.set)
    _quiet_tensorflow()
    from registry import graph_stats
    size = args.image_size or params["image_size"]
    n_params, macs = graph_stats.measure(model, params, size)
    meta = model.metadata
    print("%s: %s" % (args.name, meta["description"]))
    print("\nmeasured from the built graph (%d classes, %dx%d input):" % (params.get("num_classes", 0), size, size))
    print("  trainable parameters  %s" % _format_count(n_params))
    print("  multiply-adds         %s (%.1f M)" % (_format_count(macs), macs / 1e6))
    print("\nmetadata:")
    for key in sorted(meta):
        if key != "description" and meta[key] is not None:
            value = meta[key]
            print("  %-26s %s" % (key, _format_count(value) if isinstance(value, int) else value))
    print("\nlevel (modelzoo_level.txt):")
    for key, value in model.level.items():
        print("  %-26s %s" % (key, value))
    presets = sorted(getattr(model, "presets", {}))
    print("\npresets: %s" % (", ".join(presets) or "none"))
    print("\nhparams%s:" % (" (preset %s)" % args.preset if args.preset else " (defaults)"))
    for key in sorted(params):
        print("  %-26s %r" % (key, params[key]))
    return 0


def _resolve_run(args, saved=None):
    """(model, hparams, data_path) of a train/eval command; no --data_path means the bundled demo data."""
    model = discovery.get_model(args.name)
    data_path, preset = args.data_path, getattr(args, "preset", None)
    if saved is not None:  # eval: the model dir's effective hparams are the base
        params = hp.resolve(model, None, args.config, args.set, saved=saved)
    else:
        if data_path is None and not getattr(args, "synthetic", False) and preset is None:
            preset = "demo" if "demo" in getattr(model, "presets", {}) else None
        inherited = {}
        if getattr(args, "warm_start_from", None):
            inherited = hp.warm_start_hparams(model, args.warm_start_from)
        params = hp.resolve(model, preset, args.config, args.set, saved=inherited,
                            saved_source="the warm-start source's hparams.json")
        if inherited:
            print("Warm start keeps the weights' input convention (%s's hparams.json): %s" % (
                args.warm_start_from, ", ".join(
                    "%s=%s" % (k, params[k]) + ("" if params[k] == v else " (overridden; the weights expect %s)" % v)
                    for k, v in sorted(inherited.items()))))
    if data_path is None and not getattr(args, "synthetic", False):
        from registry.data.demo import demo_data_path
        data_path = demo_data_path()
        print("No --data_path: using the bundled demo data (%s)%s." % (
            data_path, " with the '%s' preset" % preset if preset else ""))
    return model, params, data_path


def _device_settings(args):
    from registry.engine import devices
    return devices.resolve(args.device, args.precision_mode, args.iterations_per_loop, args.dump_path,
                           args.over_dump, args.profiling, command=args.command, port=getattr(args, "port", None))


def resume_command(argv):
    """The command line that resumes this run: the launcher's (`--workers N`) for its workers, else this one."""
    from registry.engine import launcher
    return os.environ.get(launcher.RESUME_COMMAND_VARIABLE) or " ".join(
        shlex.quote(arg) for arg in ["zoo-run"] + list(argv))


def cmd_train(args):
    hp.flag_at_least(args.eval_every_epochs, 0, "--eval_every_epochs")
    hp.flag_at_least(args.max_steps, 1, "--max_steps")
    hp.flag_at_least(args.max_restarts, 0, "--max_restarts")
    model, params, data_path = _resolve_run(args)
    model_dir = args.model_dir or os.path.join("runs", args.name)
    argv = sys.argv[1:] if args.argv is None else args.argv
    if args.workers > 1 and args.replicas > 1:
        from registry.engine import distribute
        raise ZooError(distribute.replicas_with_workers_message(args.replicas, args.workers))
    if args.workers > 1:
        from registry.engine import distribute, environment, launcher
        environment.check_local_launch(args.device)
        from registry.engine import model_dir_lock
        model_dir_lock.check_free(model_dir)   # refused before any worker starts, not by worker 0's exit
        # Every worker must use the launcher's model dir (a repeated flag: argparse keeps the last).
        code = launcher.launch_local(args.workers, argv + ["--model_dir", model_dir], model_dir,
                                     resume_command=resume_command(argv), max_restarts=args.max_restarts)
        distribute.exit_worker(code)   # at once: a scheduler's grace period is not spent in TensorFlow's teardown
    _quiet_tensorflow()
    from registry.engine import distribute, interrupts, runner
    settings = _device_settings(args)
    from registry.engine import launcher   # under the launcher, its own command resumes its workers
    command = resume_command(argv) + ("" if not settings.launch.cluster or
                                      os.environ.get(launcher.RESUME_COMMAND_VARIABLE) else
                                      " (each worker with its TF_CONFIG)" if os.environ.get("TF_CONFIG") else
                                      " (with srun, one task per node)")
    if args.max_restarts:
        if not settings.launch.cluster:
            raise ZooError("--max_restarts is for a multi-worker run: the --workers launcher, or one process per "
                           "host under TF_CONFIG or Slurm (%s)" % (
                               "this process is the cluster's evaluator, which trains nothing"
                               if settings.launch.evaluator else "none is set here"))
        # this process becomes the host agent: it runs the training as its child and restarts it when it fails
        code = launcher.run_host_agent(argv + ["--model_dir", model_dir], model_dir, args.startup_timeout,
                                       resume_command=command, max_restarts=args.max_restarts)
        distribute.exit_worker(code)
    if settings.launch.evaluator:   # a TFJob's evaluator task: no training, no collective
        from registry.engine import evaluator_task
        for note in settings.launch.notes:
            print(note)
        evaluator_task.run(model, params, data_path, model_dir, settings.launch.evaluator, settings,
                           max_steps=args.max_steps, timeout=args.evaluator_timeout)
        return 0
    code = 0
    try:
        runner.train(model, params, data_path, model_dir, warm_start_from=args.warm_start_from,
                     synthetic=args.synthetic, eval_every_epochs=args.eval_every_epochs, max_steps=args.max_steps,
                     skip_eval=args.skip_eval, settings=settings, replicas=args.replicas,
                     startup_timeout=args.startup_timeout, resume_command=command)
    except interrupts.Interrupted as stopped:   # one line, no traceback, the shell's status for the signal
        if not stopped.announced:
            runner.say_stopped(stopped)
        code = stopped.exit_status
    except ZooError as err:
        if not settings.launch.cluster:
            raise
        print("zoo-run train: error: %s" % err, file=sys.stderr)
        code = 2
    if settings.launch.cluster:   # without TF 1.15's gRPC server traceback at interpreter exit
        distribute.exit_worker(code)
    return code


def _write_json(path, record):
    import json
    with open(path, "w") as f:
        json.dump(record, f, indent=2, sort_keys=True)
    print("wrote %s" % path)


def cmd_eval(args):
    from registry.engine import results
    if (args.model_dir is None) == (args.export_dir is None):
        raise ZooError("zoo-run eval evaluates a model dir (--model_dir) or an export (--export_dir): give one")
    if args.export_dir is not None:
        return _eval_export(args)
    if args.runtime != "tf" or args.precision:
        raise ZooError("--runtime and --precision choose how an export runs: use them with --export_dir")
    paths.require_dir(args.model_dir, "model dir")
    saved = results.read_json(args.model_dir, results.HPARAMS_FILE) or {}
    model, params, data_path = _resolve_run(args, saved=saved)
    _quiet_tensorflow()
    from registry.engine import runner
    from registry.engine.warm_start import resolve_checkpoint
    checkpoint = resolve_checkpoint(args.checkpoint) if args.checkpoint else None
    settings = _device_settings(args)
    for note in settings.launch.notes:
        print(note)
    runner.check_data(params, data_path, print, epoch_size=False)
    trained = results.read_json_or_none(args.model_dir, results.RUN_SUMMARY, print) or {}   # without a train log,
    record = runner.evaluate(model, params, data_path, args.model_dir, checkpoint=checkpoint,   # the epoch comes
                             history=False, settings=settings, replicas=trained.get("replicas"))   # from its replicas
    print("wrote %s" % os.path.join(args.model_dir, results.EVAL_RESULTS))
    if args.json and record:
        _write_json(args.json, {k: record[k] for k in ("top1", "top5", "loss", "num_images", "global_step",
                                                       "checkpoint")})
    return 0 if record else 1


def _eval_export(args):
    """zoo-run eval --export_dir: the export run in --runtime (at --precision) over the validation split."""
    paths.require_dir(args.export_dir, "export dir")
    model = discovery.get_model(args.name)
    _quiet_tensorflow()
    from registry.deploy import onnx_export, records_eval
    from registry.engine import perf
    found = perf.artifact(args.export_dir, args.runtime, args.precision)
    params = hp.resolve(model, None, args.config, args.set, saved=found.hparams,
                        saved_source="the hparams of the export in %s" % args.export_dir)
    _, data_path = _resolve_data(args)
    if args.runtime == "tf":
        run, version, ran = perf.frozen_graph_runner(found.path, found.fixed_batch), "tensorflow", "f32"
        layout = "NHWC"
    else:
        runner, _, layout, version = perf.exported_runner(model, params, args.runtime, args.export_dir,
                                                          precision=found.precision)
        run = lambda images: runner(images)["logits"]   # noqa: E731
        ran = version.split("(", 1)[1].rstrip(")") if args.runtime == "openvino" else "f32"
    print("Evaluating %s in %s over the validation split of %s" % (found.path, version, data_path))
    try:
        metrics = records_eval.evaluate(lambda images: run(onnx_export.to_layout(images, layout)), model, params,
                                        data_path, what=found.path)
    except ValueError as err:
        raise ZooError(str(err))
    record = dict((k, metrics[k]) for k in ("top1", "top5", "loss", "num_images"))
    record.update(export_dir=args.export_dir, model=found.path, runtime=version, precision=ran, data=data_path)
    print("eval  %s: top-1 %.4f  top-5 %.4f  loss %.4f  over %d images  (%.0f img/s)"
          % (os.path.basename(found.path), record["top1"], record["top5"], record["loss"], record["num_images"],
             record["num_images"] / max(metrics["seconds"], 1e-9)))
    if args.json:
        _write_json(args.json, record)
    return 0


def _resolve_data(args):
    if args.data_path is not None:
        return None, args.data_path
    from registry.data.demo import demo_data_path
    print("No --data_path: using the bundled demo data (%s)." % demo_data_path())
    return None, demo_data_path()


def cmd_recalibrate_bn(args):
    from registry.engine import results
    paths.require_dir(args.model_dir, "model dir")
    if not args.epochs > 0:
        raise ZooError("--epochs must be > 0 (epochs of the train split), got %r; Megvii's recipe uses 1"
                       % args.epochs)
    saved = results.read_json(args.model_dir, results.HPARAMS_FILE) or {}
    model, params, data_path = _resolve_run(args, saved=saved)
    _quiet_tensorflow()
    from registry.engine import interrupts, recalibration, runner
    runner.check_data(params, data_path, print, epoch_size=False)
    try:
        record = runner.recalibrate_bn(model, params, data_path, args.model_dir, args.epochs)
    except interrupts.Interrupted as stopped:
        print("zoo-run recalibrate-bn: %s" % stopped, file=sys.stderr)
        return stopped.exit_status
    print("wrote %s (%s); records in %s" % (record.get("checkpoint"), recalibration.describe(record),
                                            os.path.join(args.model_dir, recalibration.RECORD)))
    return 0


def cmd_perf(args):
    import json
    model = discovery.get_model(args.name)
    hp.flag_at_least(args.batch_size, 1, "--batch_size")
    hp.flag_at_least(args.steps, 1, "--steps")
    hp.flag_at_least(args.warmup, 0, "--warmup")
    deployed = args.export_dir is not None
    if args.latency and args.batch_size not in (None, 1):
        raise ZooError("--latency measures batch 1 (the per-image latency): drop --batch_size %d" % args.batch_size)
    if (deployed or args.latency) and args.mode not in (None, "infer"):
        raise ZooError("%s times inference only: drop --mode %s"
                       % ("--export_dir" if deployed else "--latency", args.mode))
    mode = args.mode or ("infer" if deployed or args.latency else "both")
    modes = ["train", "infer"] if mode == "both" else [mode]
    _quiet_tensorflow()
    from registry.engine import devices, environment, perf
    for note in environment.read("gpu" if devices.gpu_available() else "cpu", "perf").notes:
        print(note)
    saved, fixed = None, None
    if deployed:
        saved, fixed = perf.artifact(args.export_dir, args.runtime, args.precision)[1:3]
    params = hp.resolve(model, args.preset, args.config, args.set, saved=saved,
                        saved_source="the hparams of the export in %s" % args.export_dir)
    batch = args.batch_size or (1 if args.latency else fixed)
    if fixed and batch != fixed:
        raise ZooError("%s/frozen_graph.pb has the fixed batch %d: pass --batch_size %d (or none), or export again "
                       "with --batch_size %d" % (args.export_dir, fixed, fixed, batch))
    params["batch_size"] = batch or params["batch_size"]
    synthetic = args.synthetic or not args.data_path
    steps = args.steps or (LATENCY_STEPS if args.latency else 30)
    print("%s: batch %d, %dx%d, %s data, inference in %s" % (
        args.name, params["batch_size"], params["image_size"], params["image_size"],
        "synthetic" if synthetic else args.data_path, args.runtime))
    report = perf.run(model, params, modes, args.data_path, synthetic, steps=steps, warmup_steps=args.warmup,
                      runtime=args.runtime, export_dir=args.export_dir, latency=args.latency,
                      onnx_layout=args.onnx_layout, precision=args.precision, calibration_data=args.calibration_data,
                      precision_mode=args.precision_mode)
    report["network"] = args.name
    print("params %s  MACs %.1f M  peak memory %.0f MB  device %s  lane %s"
          % (_format_count(report["params"]), report["macs"] / 1e6, report["peak_memory_mb"], report["device"],
             report["lane_description"]))
    first = modes[0]
    print("Final Performance images/sec : %.2f" % report["%s_images_per_sec" % first])
    print("Final Performance %s step time ms : %.2f" % (first, report["%s_step_time_ms" % first]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2, sort_keys=True)
        print("wrote %s" % args.json)
    return 0


def cmd_modelzoo_report(args):
    from registry import modelzoo_report
    lines, path = modelzoo_report.write(args.name, args.model_dir, args.kind, args.e2e_seconds, args.output_dir)
    print("\n".join(lines))
    print("wrote %s" % path)
    return 0


def add_device_arguments(parser):
    from registry.engine.devices import DEVICES, PRECISION_MODES
    group = parser.add_argument_group("device")
    group.add_argument("--device", choices=DEVICES, default="auto",
                       help="auto: npu when npu_bridge imports, else gpu when TF sees one, else cpu")
    group.add_argument("--precision_mode", choices=PRECISION_MODES,
                       help="NPU: the Ascend precision mode (default allow_mix_precision). CPU/GPU: float32 "
                            "(default; force_fp32 or must_keep_origin_dtype), allow_mix_precision (GPU: TF's "
                            "float16 graph rewrite with dynamic loss scaling; CPU, lane tf2: convolutions in "
                            "bfloat16, the rest float32, where the CPU has AVX512_BF16 or AMX-BF16 and images "
                            "are 160 px or more (1.14-1.23x float32 at 224 on a Zen 4), else float32; ZOO_RUN_CPU_BF16=1|0 overrides the CPU check), "
                            "force_fp16 (float16 compute, float32 master weights, dynamic loss scaling) or "
                            "force_bf16 (CPU, lane tf2: the whole network in bfloat16 from float32 master "
                            "weights, on any CPU; 0.7x float32 on a Zen 4)")
    group.add_argument("--iterations_per_loop", type=int, default=1,
                       help="NPU steps per device loop; checkpoint and eval steps are rounded up to multiples")
    group.add_argument("--over_dump", action="store_true", help="NPU: dump overflowing operators (debug)")
    group.add_argument("--dump_path", type=paths.expand, help="NPU: where data or overflow dumps are written")
    group.add_argument("--profiling", type=paths.expand, metavar="DIR",
                       help="NPU: write a training-trace profile to DIR")


def add_hparam_arguments(parser, preset=True):
    if preset:
        parser.add_argument("--preset", help="a named recipe of the model (see `zoo-run describe NAME`)")
    parser.add_argument("--config", type=paths.expand, metavar="FILE.yaml", help="YAML file of hparam overrides")
    hp.add_set_argument(parser, "override hparams, typed like their defaults: --set a=1 b=2, or --set a=1 --set b=2")




def build_parser():
    parser = argparse.ArgumentParser(
        prog="zoo-run", description=__doc__, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("list", help="registered networks with their level status",
                       description="Lists every network in the 'modelzoo.models' entry-point group, "
                                   "with its one-line description and modelzoo_level.txt statuses; "
                                   "a plugin that fails to load is shown as broken with its error.")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("describe", help="hparams, parameters, MACs and metadata of one network",
                       description="Builds the network's graph and prints its measured parameter count "
                                   "and multiply-adds, its metadata, level statuses and effective hparams.")
    p.add_argument("name", help="registered model name, e.g. shufflenetv1_g3")
    p.add_argument("--image_size", type=int, help="input size to measure at (default: the hparam)")
    add_hparam_arguments(p)
    p.set_defaults(func=cmd_describe)

    # No abbreviated flags: the --workers launcher must find and strip `--workers` exactly.
    p = sub.add_parser("train", allow_abbrev=False,
                       help="train a network (resumes from the model dir's last checkpoint)",
                       description="Trains NAME with its default recipe (or --preset/--config/--set), "
                                   "evaluating every --eval_every_epochs and at the end. Rerunning the same "
                                   "command resumes from the model dir's latest checkpoint.",
                       epilog="Without --data_path it trains on the bundled demo data with the model's "
                              "'demo' preset.", formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", help="registered model name, e.g. shufflenetv1_g3")
    p.add_argument("--data_path", type=paths.expand,
                   help="directory of TF-slim TFRecords (train-*-of-*, validation-*-of-*)")
    p.add_argument("--model_dir", type=paths.expand,
                   help="checkpoints, hparams.json, eval results (default: runs/NAME)")
    p.add_argument("--warm_start_from", type=paths.expand, metavar="CKPT",
                   help="initialise from a checkpoint (prefix or model dir); variables whose shape "
                        "differs, e.g. the classifier for another num_classes, are skipped")
    p.add_argument("--eval_every_epochs", type=float, default=None,
                   help="evaluate every N epochs (default: the hparam eval_every_epochs; 0: only at the end)")
    p.add_argument("--synthetic", action="store_true", help="train on in-memory random data (no evaluation)")
    p.add_argument("--max_steps", type=int, help="stop at this global step (the schedule still spans `epochs`)")
    p.add_argument("--skip_eval", action="store_true", help="no evaluation (performance runs)")
    group = p.add_argument_group("data parallel (MirroredStrategy, MultiWorkerMirroredStrategy)")
    group.add_argument("--replicas", type=int, default=1,
                       help="synchronous replicas on this host's devices: N GPUs, or on cpu N virtual CPU "
                            "devices sharing the cores (for parity checks, not speed)")
    group.add_argument("--workers", type=int, default=1,
                       help="start N local worker processes on 127.0.0.1 (synchronous all-reduce; global batch "
                            "and learning rate scale with N). Multi-host: set TF_CONFIG on each host instead")
    group.add_argument("--max_restarts", type=int, default=0,
                       help="when a worker dies, restart from the last checkpoint, up to K times (default 0: stop, "
                            "naming the failure and the resume command). With --workers: every local worker is "
                            "started again. Under TF_CONFIG or Slurm: this host's process runs as a child of this "
                            "one, which starts it again; it waits up to --startup_timeout for the lost peer to "
                            "come back (its scheduler restarts it), then every worker resumes together")
    group.add_argument("--startup_timeout", type=float, default=300.0,
                       help="seconds a worker waits for its peers before it stops with an error (default 300)")
    group.add_argument("--port", type=int,
                       help="under Slurm (srun, one task per node): the port every task listens on (default: "
                            "derived from SLURM_JOB_ID and SLURM_STEP_ID, 20000-29999)")
    group.add_argument("--evaluator_timeout", type=float, default=6 * 3600.0,
                       help="a TF_CONFIG evaluator task stops with an error when no new checkpoint appears for this "
                            "many seconds (default 6 h)")
    add_hparam_arguments(p)
    add_device_arguments(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="top-1/top-5/loss of a trained model over the whole eval split",
                       description="Evaluates the model dir's latest checkpoint (or --checkpoint) with the "
                                   "hparams saved there, over every image of the validation split, and "
                                   "writes eval_results.json in the model dir.")
    p.add_argument("name", help="registered model name")
    p.add_argument("--model_dir", type=paths.expand, help="the training run's directory")
    p.add_argument("--export_dir", type=paths.expand,
                   help="instead of a model dir: what `zoo-run export` wrote there, run in --runtime")
    p.add_argument("--runtime", choices=["tf", "onnxruntime", "openvino"], default="tf",
                   help="with --export_dir: tf (its frozen graph, default), onnxruntime (model.onnx) or openvino")
    p.add_argument("--precision", choices=["f32", "bf16", "int8"],
                   help="with --export_dir --runtime openvino: the precision (default: the export's default_precision)")
    p.add_argument("--json", type=paths.expand, metavar="FILE", help="write top1, top5, loss, num_images as JSON")
    p.add_argument("--data_path", type=paths.expand,
                   help="directory of TF-slim TFRecords (default: the bundled demo data)")
    p.add_argument("--checkpoint", type=paths.expand,
                   help="a checkpoint prefix, e.g. MODEL_DIR/model.ckpt-1000 (default: latest)")
    add_hparam_arguments(p, preset=False)  # the model dir's hparams.json is the base
    add_device_arguments(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("recalibrate-bn", help="BN recalibration of a trained model: moving statistics averaged "
                                              "over a pass at learning rate 0",
                       description="Runs the network's training graph over --epochs epochs of the train split "
                                   "without changing any weight, making each batch-norm moving statistic the plain "
                                   "average of the pass's batch statistics (the last phase of Megvii's recipe; the "
                                   "bn_recalibration_epochs hparam runs it at the end of `zoo-run train`). Writes "
                                   "a new checkpoint in the model dir, evaluates it and the one it started from, "
                                   "and records both in bn_recalibration.json, eval_history.jsonl and "
                                   "run_summary.json. Rerunning the command resumes a stopped pass.")
    p.add_argument("name", help="registered model name")
    p.add_argument("--model_dir", type=paths.expand, required=True, help="the training run's directory")
    p.add_argument("--epochs", type=float, default=1.0, help="epochs of the train split (default 1)")
    p.add_argument("--data_path", type=paths.expand,
                   help="directory of TF-slim TFRecords (default: the bundled demo data)")
    add_hparam_arguments(p, preset=False)  # the model dir's hparams.json is the base
    p.set_defaults(func=cmd_recalibrate_bn)

    p = sub.add_parser("perf", help="training and inference images/sec, batch-1 latency (synthetic or real data)",
                       description="Times training steps (the same graph as `zoo-run train`) and inference of the "
                                   "exported graph (the frozen graph in TensorFlow, or the ONNX model in onnxruntime; "
                                   "of an export dir, or of fresh weights) after a warm-up, in windows; reports the "
                                   "median window's images/sec and step time, parameters, MACs and peak memory, as "
                                   "ModelZoo lines and JSON (with timm's benchmark.py keys too). --latency: batch 1, "
                                   "p50/p90 of %d single-image runs." % LATENCY_STEPS)
    p.add_argument("name", help="registered model name")
    p.add_argument("--data_path", type=paths.expand,
                   help="TF-slim TFRecords to read (default: synthetic in-memory data)")
    p.add_argument("--synthetic", action="store_true", help="in-memory random images (the default without --data_path)")
    p.add_argument("--mode", choices=["train", "infer", "both"],
                   help="default: both; infer with --export_dir or --latency")
    p.add_argument("--runtime", choices=["tf", "onnxruntime", "openvino"], default="tf",
                   help="inference runtime: tf (frozen graph, default), onnxruntime (ONNX model; needs "
                        "`pip install .[onnx]`) or openvino (the ONNX model in OpenVINO, float32; needs "
                        "`pip install .[onnx,openvino]`)")
    p.add_argument("--onnx_layout", type=str.upper, choices=["NHWC", "NCHW"],
                   help="onnxruntime/openvino on fresh weights: the converted model's input layout (default NHWC; "
                        "NCHW as PyTorch's exports)")
    p.add_argument("--export_dir", help="time the model `zoo-run export` wrote there (frozen_graph.pb for tf, "
                                        "model.onnx for onnxruntime, openvino/model.xml (else model.onnx) for "
                                        "openvino) instead of fresh weights")
    p.add_argument("--latency", action="store_true",
                   help="per-image latency: batch 1, p50/p90 in ms of single runs (default %d)" % LATENCY_STEPS)
    p.add_argument("--batch_size", type=int, help="per-device batch (default: the hparam; an export dir's frozen "
                                                  "graph: its fixed batch; --latency: 1)")
    p.add_argument("--steps", type=int, help="timed steps, split into 5 windows (default 30; --latency %d)"
                                             % LATENCY_STEPS)
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first (default 5)")
    p.add_argument("--json", type=paths.expand, metavar="PATH", help="write the report as JSON")
    from registry.engine.devices import PRECISION_MODES
    p.add_argument("--precision_mode", choices=PRECISION_MODES,
                   help="training's precision mode, as `zoo-run train --precision_mode` (the report names the "
                        "precision that ran)")
    from registry.deploy.cli import precision_arguments
    precision_arguments(p)
    add_hparam_arguments(p)
    p.set_defaults(func=cmd_perf)

    p = sub.add_parser("modelzoo-report", help="ModelZoo closing lines and ${CaseName}.log from a finished run",
                       description="Reads MODEL_DIR/run_summary.json (written by `zoo-run train`) and prints "
                                   "the Ascend ModelZoo closing lines, writing OUTPUT_DIR/${CaseName}.log.")
    p.add_argument("name", help="registered model name (the Network field)")
    p.add_argument("--model_dir", type=paths.expand, required=True)
    p.add_argument("--kind", choices=["acc", "perf"], default="acc", help="the CaseName suffix")
    p.add_argument("--e2e_seconds", type=float, required=True, help="wall time of the whole script")
    p.add_argument("--output_dir", type=paths.expand, required=True, help="where ${CaseName}.log is written")
    p.set_defaults(func=cmd_modelzoo_report)

    from registry.data import cli as data_cli
    from registry.deploy import cli as deploy_cli
    data_cli.register(sub)
    deploy_cli.register(sub)
    return parser


def main(argv=None):
    # Before anything imports TensorFlow: its C++ log (CUDA-plugin registration lines on a machine without a GPU,
    # start-up notes) is hidden; TF_CPP_MIN_LOG_LEVEL=0 shows it again.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    command = "zoo-run"
    try:
        from registry import onednn
        onednn.turn_on()   # TensorFlow's oneDNN CPU kernels unless TF_ENABLE_ONEDNN_OPTS is set (registry/onednn.py)
        from registry import tf_import
        tf_import.import_tensorflow()   # TF 2.20+ writes start-up notes past TF_CPP_MIN_LOG_LEVEL (tf_import.py)
        args = build_parser().parse_args(argv)
        args.argv = argv  # the launcher replays the command line for its workers
        command = "zoo-run %s" % args.command
        return args.func(args) or 0
    except ZooError as err:
        print("%s: error: %s" % (command, err), file=sys.stderr)
        return 2
    except KeyboardInterrupt:   # Ctrl-C outside a training run (which stops at a checkpoint): one line, no traceback
        print("%s: interrupted (Ctrl-C)" % command, file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
