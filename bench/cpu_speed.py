"""CPU speed of `zoo-run perf` against the PyTorch reference, measured in the same run.

Rounds alternate between the configurations (so all see the same machine state); each round is one
process per configuration; the table gives the median over rounds and the ratio to PyTorch.

    python bench/cpu_speed.py --rounds 3 \\
        --torch /tmp/torchenv/bin/python \\
        --tf tf1=.venv/tf1/bin/zoo-run --tf tf2=.venv/tf2/bin/zoo-run \\
        --onnx .venv/tf2/bin/zoo-run

`--tf NAME=ZOO_RUN [VAR=VALUE ...]` adds a TensorFlow configuration: the zoo-run of a venv (e.g. one
with intel-tensorflow 1.15.2 instead of tensorflow 1.15.0) and environment settings for it.
`--onnx ZOO_RUN [VAR=VALUE ...]` (a venv with `pip install .[onnx]`) adds two inference rows in that venv's
onnxruntime: the PyTorch reference exported by torch.onnx.export (bench/torch_reference.py --export_onnx,
timed by bench/onnx_speed.py) and the project's own ONNX conversion (`zoo-run perf --runtime onnxruntime`),
and their ratio. The torch venv is a dev-only comparison (bench/torch_reference.py), never a dependency.
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


ORT_TORCH = "onnxruntime: PyTorch export"
ORT_ZOO = "onnxruntime: zoo-run export"


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


def _cells(value, reference):
    return "- | -" if value is None else "%.1f | %.2fx" % (value, value / reference)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--torch", required=True, help="python of a venv with torch (bench/torch_reference.py)")
    parser.add_argument("--tf", action="append", required=True, help="NAME=ZOO_RUN [VAR=VALUE ...]")
    parser.add_argument("--onnx", metavar="ZOO_RUN [VAR=VALUE ...]",
                        help="also time ONNX exports in the onnxruntime of this zoo-run's venv")
    parser.add_argument("--ort", action="append", default=[], metavar="PYTHON",
                        help="also time the PyTorch export in the onnxruntime of this python (e.g. a newer release "
                             "than the --onnx venv's); repeatable")
    parser.add_argument("--model", default="shufflenetv1_g3")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch_size", type=int, default=32)
    args = parser.parse_args()

    common = ["--steps", str(args.steps), "--warmup", str(args.warmup), "--batch_size", str(args.batch_size)]
    configs = [("pytorch", [args.torch, os.path.join(HERE, "torch_reference.py")] + common, dict(os.environ))]
    for spec in args.tf:
        name, rest = spec.split("=", 1)
        zoo_run, env = _command(rest)
        configs.append((name, [zoo_run, "perf", args.model, "--synthetic"] + common, env))
    workdir = tempfile.mkdtemp(prefix="cpu_speed_")
    atexit.register(shutil.rmtree, workdir, True)
    torch_onnx = os.path.join(workdir, "torch_reference.onnx")
    if args.onnx or args.ort:
        subprocess.run([args.torch, os.path.join(HERE, "torch_reference.py"), "--export_onnx", torch_onnx],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if args.onnx:
        zoo_run, env = _command(args.onnx)
        python = os.path.join(os.path.dirname(zoo_run), "python")
        configs.append((ORT_TORCH, [python, os.path.join(HERE, "onnx_speed.py"), torch_onnx] + common, env))
        configs.append((ORT_ZOO, [zoo_run, "perf", args.model, "--synthetic", "--runtime", "onnxruntime",
                                  "--mode", "infer"] + common, env))
    for i, python in enumerate(args.ort):
        configs.append(("%s #%d" % (ORT_TORCH, i + 2), [python, os.path.join(HERE, "onnx_speed.py"), torch_onnx] + common,
                        dict(os.environ)))

    figures = {name: {"train": [], "infer": []} for name, _, _ in configs}
    runtimes = {}
    for round_ in range(args.rounds):
        for name, command, env in configs:
            report = _run_json(command, env, workdir)
            runtimes[name] = report.get("infer_runtime") or report.get("runtime")
            for mode in ("train", "infer"):
                if "%s_images_per_sec" % mode in report:
                    figures[name][mode].append(report["%s_images_per_sec" % mode])
            print("round %d  %-28s %s" % (round_ + 1, name, "  ".join(
                "%s %6.1f img/s" % (mode, values[-1]) for mode, values in figures[name].items() if values)),
                file=sys.stderr)

    median = {name: {m: statistics.median(v) if v else None for m, v in modes.items()}
              for name, modes in figures.items()}
    reference = median["pytorch"]
    print("| %s, batch %d, 224x224, median of %d rounds | train img/s | vs PyTorch | infer img/s | vs PyTorch |"
          % (args.model, args.batch_size, args.rounds))
    print("|---|---|---|---|---|")
    for name, _, _ in configs:
        label = "%s (%s)" % (name.split(" #")[0], runtimes[name]) if name.startswith("onnxruntime") else name
        print("| %s | %s | %s |" % (label, _cells(median[name]["train"], reference["train"]),
                                    _cells(median[name]["infer"], reference["infer"])))
    if args.onnx:
        print("\nzoo-run's ONNX export / the PyTorch export, both in %s: %.2fx"
              % (runtimes[ORT_ZOO], median[ORT_ZOO]["infer"] / median[ORT_TORCH]["infer"]))


if __name__ == "__main__":
    main()
