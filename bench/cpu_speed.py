"""CPU speed of `zoo-run perf` against the PyTorch reference and the runtimes on its ONNX export, in one run.

Rounds alternate between the configurations (so all see the same machine state); each round is one
process per configuration; the table gives the median over rounds, the ratio to PyTorch eager and, with
--peak_gmacs, the fraction of the physical bound each row reaches.

    python bench/cpu_speed.py --rounds 3 --peak_gmacs 83.2 \\
        --torch /tmp/torchenv/bin/python \\
        --tf tf1=.venv/tf1/bin/zoo-run --tf tf2=.venv/tf2/bin/zoo-run \\
        --onnx .venv/tf2/bin/zoo-run --onnx .venv/tf1/bin/zoo-run --openvino .venv/tf2/bin/zoo-run

`--tf NAME=ZOO_RUN [VAR=VALUE ...]` adds a TensorFlow configuration (training and the frozen graph's inference):
the zoo-run of a venv (e.g. one with intel-tensorflow 1.15.2 instead of tensorflow 1.15.0) and environment
settings for it. `--onnx ZOO_RUN [VAR=VALUE ...]` (a venv with `pip install .[onnx]`; repeatable, one per
onnxruntime release) adds three inference rows in that venv's onnxruntime: the PyTorch reference exported by
torch.onnx.export (bench/torch_reference.py --export_onnx, timed by bench/onnx_speed.py, NCHW input) and the
project's own conversion (`zoo-run perf --runtime onnxruntime`) with an NHWC and with an NCHW input, and their
ratios. `--openvino ZOO_RUN` (a venv with `.[onnx,openvino]`) adds the same rows in its OpenVINO (float32).
`--ort PYTHON` times the PyTorch export in another onnxruntime.
`--precision bf16 --precision int8` (with `--openvino`) adds rows of the project's IR in OpenVINO at those
precisions (`zoo-run perf --runtime openvino --precision P`; the row names the precision that ran: bf16 falls
back to float32 on CPUs without bfloat16 hardware); int8 needs `--calibration_data DIR` (TFRecords, e.g. the
bundled demo data, quantized once per process with NNCF; its accuracy is the export's concern, `zoo-run export
--precision int8`). `--train_precision_mode allow_mix_precision` adds a training row of each --tf configuration in
that mode (bfloat16 on CPUs with bfloat16 hardware, float32 elsewhere; the row names which). The torch venv is a dev-only comparison
(bench/torch_reference.py), never a dependency.

The physical bound (--peak_gmacs, float32 multiply-adds per second of all cores, in G): cores x FMA pipes x
float32 lanes per pipe x clock, e.g. a 2-core AMD EPYC Zen 4 at 2.6 GHz: 2 x 2 x 8 x 2.6 = 83.2 (its AVX-512
runs on 256-bit pipes); a 2-core AVX-512 Xeon with two 512-bit FMA units at 2.6 GHz: 2 x 2 x 16 x 2.6 = 166.4.
A forward pass costs the network's multiply-adds (zoo-run's `macs`), a training step about three times that
(forward, input gradient, weight gradient).
"""
import argparse
import atexit
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
TORCH = "pytorch"
TORCH_EXPORT = "PyTorch export"
TRAIN_MACS_FACTOR = 3.0   # a training step's multiply-adds per image / a forward pass's


def _command(spec):
    """'PROGRAM [VAR=VALUE ...]' -> (PROGRAM, environment with the settings)."""
    words = spec.split()
    return words[0], dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **dict(w.split("=", 1) for w in words[1:]))


def _run_json(command, env, workdir):
    path = os.path.join(workdir, "report.json")
    subprocess.run(command + ["--json", path], env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    with open(path) as f:
        return json.load(f)


def _machine():
    model = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return "%s, %d logical CPUs" % (model, os.cpu_count())


def _load():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def _configs(args, torch_onnx):
    """[(name, kind, command, env)]: kind 'torch', 'tf', or (runtime family, model) for the exported-model rows."""
    common = ["--steps", str(args.steps), "--warmup", str(args.warmup), "--batch_size", str(args.batch_size)]
    configs = [(TORCH, "torch", [args.torch, os.path.join(HERE, "torch_reference.py")] + common, dict(os.environ))]
    for spec in args.tf:
        name, rest = spec.split("=", 1)
        zoo_run, env = _command(rest)
        modes = [] if args.tf_mode == "both" else ["--mode", args.tf_mode]
        configs.append((name, "tf", [zoo_run, "perf", args.model, "--synthetic"] + modes + common, env))
        if args.train_precision_mode:
            configs.append(("%s, %s" % (name, args.train_precision_mode), "tf",
                            [zoo_run, "perf", args.model, "--synthetic", "--mode", "train", "--precision_mode",
                             args.train_precision_mode] + common, env))
    for family, specs in (("onnxruntime", args.onnx), ("openvino", args.openvino)):
        for i, spec in enumerate(specs):
            zoo_run, env = _command(spec)
            python = os.path.join(os.path.dirname(zoo_run), "python")
            tag = "%s #%d" % (family, i + 1)
            configs.append(("%s: %s" % (tag, TORCH_EXPORT), (tag, "torch"),
                            [python, os.path.join(HERE, "onnx_speed.py"), torch_onnx, "--runtime", family] + common,
                            env))
            for layout in ("NHWC", "NCHW") if family == "onnxruntime" else ("NCHW",):
                configs.append(("%s: zoo-run's ONNX, %s input" % (tag, layout), (tag, layout),
                                [zoo_run, "perf", args.model, "--synthetic", "--runtime", family, "--mode", "infer",
                                 "--onnx_layout", layout] + common, env))
            for precision in args.precision if family == "openvino" else ():
                calibration = ["--calibration_data", args.calibration_data] if precision == "int8" else []
                configs.append(("%s: zoo-run's ONNX, NCHW input, %s" % (tag, precision), (tag, "NCHW " + precision),
                                [zoo_run, "perf", args.model, "--synthetic", "--runtime", family, "--mode", "infer",
                                 "--onnx_layout", "NCHW", "--precision", precision] + calibration + common, env))
    for i, python in enumerate(args.ort):
        tag = "onnxruntime (--ort #%d)" % (i + 1)
        configs.append(("%s: %s" % (tag, TORCH_EXPORT), (tag, "torch"),
                        [python, os.path.join(HERE, "onnx_speed.py"), torch_onnx] + common, dict(os.environ)))
    return configs


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--torch", required=True, help="python of a venv with torch (bench/torch_reference.py)")
    parser.add_argument("--tf", action="append", default=[], help="NAME=ZOO_RUN [VAR=VALUE ...]")
    parser.add_argument("--onnx", action="append", default=[], metavar="ZOO_RUN [VAR=VALUE ...]",
                        help="time the ONNX exports in the onnxruntime of this zoo-run's venv; repeatable")
    parser.add_argument("--openvino", action="append", default=[], metavar="ZOO_RUN [VAR=VALUE ...]",
                        help="time the ONNX exports in the OpenVINO of this zoo-run's venv; repeatable")
    parser.add_argument("--ort", action="append", default=[], metavar="PYTHON",
                        help="also time the PyTorch export in the onnxruntime of this python; repeatable")
    parser.add_argument("--precision", action="append", default=[], choices=["bf16", "int8"],
                        help="with --openvino: also time the project's IR at this precision; repeatable")
    parser.add_argument("--calibration_data", help="TFRecords calibrating --precision int8 (e.g. the demo data)")
    parser.add_argument("--train_precision_mode", choices=["allow_mix_precision", "force_fp16", "force_bf16"],
                        help="also time each --tf configuration's training in this precision mode")
    parser.add_argument("--peak_gmacs", type=float, help="the cores' float32 multiply-adds per second, in G (the "
                                                         "physical bound; see the module docstring)")
    parser.add_argument("--tf_mode", choices=["both", "train", "infer"], default="both",
                        help="what the --tf rows time (default both: training and the frozen graph's inference)")
    parser.add_argument("--model", default="shufflenetv1_g3")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch_size", type=int, default=32)
    args = parser.parse_args()
    if "int8" in args.precision and not args.calibration_data:
        parser.error("--precision int8 needs --calibration_data DIR")

    workdir = tempfile.mkdtemp(prefix="cpu_speed_")
    atexit.register(shutil.rmtree, workdir, True)
    torch_onnx = os.path.join(workdir, "torch_reference.onnx")
    configs = _configs(args, torch_onnx)
    if args.onnx or args.openvino or args.ort:
        subprocess.run([args.torch, os.path.join(HERE, "torch_reference.py"), "--export_onnx", torch_onnx],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    print("machine: %s; load average at the start %s" % (_machine(), _load()), file=sys.stderr)
    figures = {name: {"train": [], "infer": []} for name, _, _, _ in configs}
    runtimes, macs = {}, None
    for round_ in range(args.rounds):
        for name, _, command, env in configs:
            report = _run_json(command, env, workdir)
            runtimes[name] = report.get("infer_runtime") or report.get("runtime") or report.get("framework")
            if report.get("train_precision") and not report.get("infer_runtime"):
                runtimes[name] = "%s, trained in %s" % (report.get("lane_description", ""), report["train_precision"])
            macs = report.get("macs", macs)
            for mode in ("train", "infer"):
                if "%s_images_per_sec" % mode in report:
                    figures[name][mode].append(report["%s_images_per_sec" % mode])
            print("round %d  %-46s %s  (load %s)" % (round_ + 1, name, "  ".join(
                "%s %6.1f img/s" % (mode, values[-1]) for mode, values in figures[name].items() if values), _load()),
                file=sys.stderr)

    median = {name: {m: statistics.median(v) if v else None for m, v in modes.items()}
              for name, modes in figures.items()}
    reference = median[TORCH]

    def cells(name, mode):
        value = median[name][mode]
        if value is None:
            return "- | - | -" if args.peak_gmacs else "- | -"
        text = "%.1f | %.2fx" % (value, value / reference[mode])
        if args.peak_gmacs:
            factor = TRAIN_MACS_FACTOR if mode == "train" else 1.0
            text += " | %.0f%%" % (100.0 * value * factor * (macs or 0) / (args.peak_gmacs * 1e9))
        return text

    bound = " | of bound" if args.peak_gmacs else ""
    print("| %s, batch %d, 224x224, median of %d rounds | train img/s | vs PyTorch%s | infer img/s | vs PyTorch%s |"
          % (args.model, args.batch_size, args.rounds, bound, bound))
    print("|---|---|---|%s---|---|%s" % ("---|" if bound else "", "---|" if bound else ""))
    for name, kind, _, _ in configs:
        label = name if kind in ("torch", "tf") else "%s (%s)" % (name.split(": ", 1)[1], runtimes[name])
        if kind == "tf":
            label = "%s (%s)" % (name, runtimes[name])
        print("| %s | %s | %s |" % (label, cells(name, "train"), cells(name, "infer")))

    exported = [(name, kind) for name, kind, _, _ in configs if isinstance(kind, tuple)]
    for tag in sorted({kind[0] for _, kind in exported}):
        torch_row = [n for n, k in exported if k == (tag, "torch")][0]
        for name, kind in exported:
            if kind[0] == tag and kind[1] != "torch":
                print("\n%s / the PyTorch export, both in %s: %.2fx" % (
                    name.split(": ", 1)[1], runtimes[name], median[name]["infer"] / median[torch_row]["infer"]),
                      end="")
    if exported:
        print()
    trained = [n for n, k, _, _ in configs if k == "tf" and median[n]["train"]]
    if trained:
        best = max(trained, key=lambda n: median[n]["train"])
        print("training, the best TensorFlow row (%s) / PyTorch eager: %.2fx" % (
            best, median[best]["train"] / reference["train"]))
    ours = [n for n, k, _, _ in configs if (k == "tf" or (isinstance(k, tuple) and k[1] != "torch"))
            and median[n]["infer"]]
    theirs = [n for n, k in exported if k[1] == "torch"]
    if ours and theirs:
        best, fastest = max(ours, key=lambda n: median[n]["infer"]), max(theirs, key=lambda n: median[n]["infer"])
        print("inference, the project's fastest path (%s) / the fastest runtime on the PyTorch export (%s): %.2fx" % (
            best, fastest, median[best]["infer"] / median[fastest]["infer"]))
    print("machine: %s; load average at the end %s" % (_machine(), _load()))


if __name__ == "__main__":
    main()
