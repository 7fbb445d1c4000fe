"""Multi-host data parallel training as hosts really are: two network namespaces joined by a veth pair, one
worker in each, TF_CONFIG naming their own addresses (MultiWorkerMirroredStrategy, ring all-reduce over the
link), the model dir on storage both read. One scenario per lane."""
import json
import os
import subprocess

import pytest
import tensorflow as tf

import netns
from registry.engine import environment

pytestmark = pytest.mark.skipif(not netns.available()[0], reason=netns.available()[1])
PORT = 23456   # the same port on each host, as a cluster spec usually has it


def test_two_hosts_train_in_sync_and_the_chief_evaluates(tmp_path, zoo_run):
    model_dir = tmp_path / "two_hosts"
    with netns.two_hosts() as hosts:
        workers = ["%s:%d" % (host.address, PORT) for host in hosts]
        processes, logs = [], []
        for index, host in enumerate(hosts):
            logs.append(tmp_path / ("worker-%d.out" % index))
            with open(str(logs[-1]), "w") as out:
                # 11 steps an epoch at global batch 128: an evaluation at steps 2 and 4, the peer waiting
                processes.append(host.popen(
                    [zoo_run, "train", "shufflenetv1_g3", "--device", "cpu", "--model_dir", str(model_dir),
                     "--max_steps", "4", "--eval_every_epochs", "0.2", "--startup_timeout", "180"],
                    env=dict(os.environ, TF_CONFIG=environment.make_tf_config(workers, index)),
                    stdout=out, stderr=subprocess.STDOUT))
        try:
            codes = [p.wait(timeout=600) for p in processes]
        finally:
            for p in processes:
                if p.poll() is None:
                    p.kill()
    text = "\n".join("--- %s\n%s" % (log.name, log.read_text()) for log in logs)
    assert codes == [0, 0], text
    assert "worker 1 of 2 (not chief)" in text and "worker 0 of 2 (chief)" in text
    fingerprints = [json.loads((model_dir / "workers" / ("worker-%d.json" % i)).read_text()) for i in (0, 1)]
    assert [f["global_step"] for f in fingerprints] == [4, 4]
    assert fingerprints[0]["weights_sha256"] == fingerprints[1]["weights_sha256"], text
    assert tf.compat.v1.train.latest_checkpoint(str(model_dir)).endswith("model.ckpt-4")
    summary = json.loads((model_dir / "run_summary.json").read_text())
    assert (summary["workers"], summary["global_batch"], summary["final_step"]) == (2, 128, 4)
    history = [json.loads(line) for line in (model_dir / "eval_history.jsonl").read_text().splitlines()]
    assert [r["global_step"] for r in history] == [2, 4] and all(r["num_images"] == 360 for r in history)
