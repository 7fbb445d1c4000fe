"""CPU speed of `zoo-run perf` against the PyTorch reference, measured in the same run.

Rounds alternate between the configurations (so all see the same machine state); each round is one
process per configuration; the table gives the median over rounds and the ratio to PyTorch.

    python bench/cpu_speed.py --rounds 3 \\
        --torch /tmp/torchenv/bin/python \\
        --tf tf1=.venv/tf1/bin/zoo-run --tf tf2=.venv/tf2/bin/zoo-run \\
        --tf "intel=/tmp/itf/bin/zoo-run OMP_NUM_THREADS=2 KMP_BLOCKTIME=1"

`--tf NAME=ZOO_RUN [VAR=VALUE ...]` adds a TensorFlow configuration: the zoo-run of a venv (e.g. one
with intel-tensorflow 1.15.2 instead of tensorflow 1.15.0) and environment settings for it. The
torch venv is a dev-only comparison (bench/torch_reference.py), never a dependency.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def _run_json(command, env):
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run(command + ["--json", out.name], env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with open(out.name) as f:
            return json.load(f)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--torch", required=True, help="python of a venv with torch (bench/torch_reference.py)")
    parser.add_argument("--tf", action="append", required=True, help="NAME=ZOO_RUN [VAR=VALUE ...]")
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
        words = rest.split()
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **dict(w.split("=", 1) for w in words[1:]))
        configs.append((name, [words[0], "perf", args.model, "--synthetic"] + common, env))

    figures = {name: {"train": [], "infer": []} for name, _, _ in configs}
    for round_ in range(args.rounds):
        for name, command, env in configs:
            report = _run_json(command, env)
            for mode in ("train", "infer"):
                figures[name][mode].append(report["%s_images_per_sec" % mode])
            print("round %d  %-10s train %6.1f  infer %6.1f img/s" % (
                round_ + 1, name, report["train_images_per_sec"], report["infer_images_per_sec"]), file=sys.stderr)

    median = {name: {m: statistics.median(v) for m, v in modes.items()} for name, modes in figures.items()}
    reference = median["pytorch"]
    print("| %s, batch %d, 224x224, median of %d rounds | train img/s | vs PyTorch | infer img/s | vs PyTorch |"
          % (args.model, args.batch_size, args.rounds))
    print("|---|---|---|---|---|")
    for name, _, _ in configs:
        row = median[name]
        print("| %s | %.1f | %.2fx | %.1f | %.2fx |" % (name, row["train"], row["train"] / reference["train"],
                                                        row["infer"], row["infer"] / reference["infer"]))


if __name__ == "__main__":
    main()
