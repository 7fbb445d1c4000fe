"""`zoo-run train` throughput of several installations, measured in the same run: e.g. the engine of this tree
against an earlier one (the tf.estimator engine of commit c7f556f) on the same lane.

Rounds alternate between the configurations (all see the same machine state); each round trains a fresh model
dir for `--steps` steps of the bundled demo data (the real input pipeline, no evaluation) in one process per
configuration, and reads the throughput the run recorded (run_summary.json: the median of its progress reports,
the first step's graph warm-up excluded). The table gives the median over rounds and the ratio to the first
configuration.

    python bench/train_speed.py --rounds 3 --steps 150 \\
        --zoo "estimator-tf1=PYTHONPATH=/tmp/oldengine .venv/tf1/bin/python -m registry.cli" \\
        --zoo "sessions-tf1=.venv/tf1/bin/zoo-run"

`--zoo NAME=[VAR=VALUE ...] COMMAND...`: the environment settings, then the command that stands for `zoo-run`.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile


def _configuration(spec):
    name, rest = spec.split("=", 1)
    words = rest.split()
    settings = {}
    while words and "=" in words[0] and not words[0].startswith(("-", "/", ".")):
        key, value = words.pop(0).split("=", 1)
        settings[key] = value
    return name, words, dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **settings)


def _train(command, env, steps, network, workdir):
    model_dir = os.path.join(workdir, "run")
    shutil.rmtree(model_dir, ignore_errors=True)
    subprocess.run(command + ["train", network, "--device", "cpu", "--model_dir", model_dir, "--max_steps",
                              str(steps), "--skip_eval"], env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    with open(os.path.join(model_dir, "run_summary.json")) as f:
        return json.load(f)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--zoo", action="append", required=True, help="NAME=[VAR=VALUE ...] COMMAND...")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=150, help="training steps per run (default 150)")
    parser.add_argument("--network", default="shufflenetv1_g3")
    args = parser.parse_args()
    configurations = [_configuration(spec) for spec in args.zoo]
    rates = {name: [] for name, _, _ in configurations}
    versions = {}
    workdir = tempfile.mkdtemp(prefix="train_speed_")
    try:
        for round_ in range(args.rounds):
            for name, command, env in configurations:
                summary = _train(command, env, args.steps, args.network, workdir)
                rates[name].append(summary["images_per_sec"])
                versions[name] = "%s, TensorFlow %s" % (summary.get("lane"), summary.get("tensorflow"))
                print("round %d  %-20s %7.1f img/s" % (round_ + 1, name, rates[name][-1]), flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    first = statistics.median(rates[configurations[0][0]])
    print("\n| configuration | train img/s (median of %d) | ratio | rounds |" % args.rounds)
    print("|---|---|---|---|")
    for name, _, _ in configurations:
        median = statistics.median(rates[name])
        print("| %s (%s) | %.1f | %.2fx | %s |" % (name, versions[name], median, median / first,
                                                   ", ".join("%.1f" % r for r in rates[name])))


if __name__ == "__main__":
    main()
