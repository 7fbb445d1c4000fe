"""Mixed precision off the NPU: float16 compute from float32 master weights with dynamic loss
scaling (force_fp16), and allow_mix_precision on a CPU without bfloat16 hardware (float32), on CPU kernels."""
import json
import os

import numpy as np
import tensorflow as tf

from modelzoo_shufflenet import models
from registry.engine import devices, graph, schedule

tf1 = tf.compat.v1
MODEL = models.SHUFFLENETV1_G3


def _train_graph(precision_mode, batch=4, size=32):
    hparams = dict(MODEL.default_hparams(), **MODEL.presets["demo"])
    hparams.update(image_size=size, batch_size=batch)
    rng = np.random.RandomState(0)
    images = tf.constant(rng.rand(batch, size, size, 3).astype(np.float32))
    labels = tf.constant(np.arange(batch, dtype=np.int32) % hparams["num_classes"])
    tf1.train.get_or_create_global_step()
    return graph.train_step(MODEL, hparams, schedule.Plan(hparams), devices.resolve("cpu", precision_mode), images,
                            labels)


def test_force_fp16_computes_in_float16_keeps_float32_weights_and_skips_overflow_steps():
    with tf.Graph().as_default() as graph:
        spec = _train_graph("force_fp16")
        convs = [op for op in graph.get_operations() if op.type in ("Conv2D", "DepthwiseConv2dNative")]
        assert convs and all(op.get_attr("T") == tf.float16 for op in convs)
        assert all(v.dtype.base_dtype == tf.float32 for v in tf1.global_variables() if v.dtype.is_floating)
        kernel = [v for v in tf1.trainable_variables() if v.name == "shufflenet_v1/first_conv/kernel:0"][0]
        scale = [v for v in tf1.global_variables() if v.name == "current_loss_scale:0"][0]
        step = tf1.train.get_global_step()
        with tf1.Session() as session:
            session.run(tf1.global_variables_initializer())
            initial = session.run(kernel)
            # The initial scale (2**15) makes this network's float16 gradients overflow: skipped, scale halved.
            assert session.run(scale) == devices.TF_LOSS_SCALE["initial_loss_scale"]
            loss = session.run([spec.train_op, spec.reported['loss']])[1]
            assert np.isfinite(loss)
            assert session.run(step) == 0 and session.run(scale) == 2 ** 14
            np.testing.assert_array_equal(session.run(kernel), initial)
            runs = 1
            while session.run(step) < 3 and runs < 30:
                session.run(spec.train_op)
                runs += 1
            assert session.run(step) == 3, "no step was applied in %d runs" % runs
            final_scale = session.run(scale)
            assert final_scale < 2 ** 14 and runs - 3 == np.log2(2 ** 15 / final_scale)  # one halving per skip
            assert np.abs(session.run(kernel) - initial).max() > 0
            assert np.isfinite(session.run(spec.reported['loss']))


def test_allow_mix_precision_on_a_cpu_without_bf16_is_a_plain_float32_graph(monkeypatch):
    monkeypatch.setenv("ZOO_RUN_CPU_BF16", "0")   # the branch of AVX2-only CPUs (test_precision forces the other)
    with tf.Graph().as_default() as graph:
        spec = _train_graph("allow_mix_precision")
        convs = [op for op in graph.get_operations() if op.type in ("Conv2D", "DepthwiseConv2dNative")]
        assert convs and all(op.get_attr("T") == tf.float32 for op in convs)
        assert not [v for v in tf1.global_variables() if "loss_scale" in v.name]   # no pointless loss scaling
        assert "loss_scale" not in spec.reported
        step = tf1.train.get_global_step()
        kernel = tf1.trainable_variables()[0]
        with tf1.Session() as session:
            session.run(tf1.global_variables_initializer())
            initial = session.run(kernel)
            losses = [session.run([spec.train_op, spec.reported['loss']])[1] for _ in range(3)]
            assert session.run(step) == 3
            assert np.all(np.isfinite(losses)) and np.abs(session.run(kernel) - initial).max() > 0


def test_train_command_in_force_fp16_logs_the_loss_scale_and_checkpoints_float32(tmp_path, zoo_run):
    import subprocess
    model_dir = str(tmp_path / "fp16")
    out = subprocess.run([zoo_run, "train", "shufflenetv1_g3", "--device", "cpu", "--precision_mode", "force_fp16",
                          "--model_dir", model_dir, "--max_steps", "4", "--skip_eval", "--set", "batch_size=8"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    assert out.returncode == 0, out.stdout
    assert "loss scale" in out.stdout
    with open(os.path.join(model_dir, "train_log.jsonl")) as f:
        records = [json.loads(line) for line in f]
    assert records[-1]["step"] == 4 and records[-1]["loss_scale"] < 2 ** 15
    reader = tf1.train.NewCheckpointReader(tf1.train.latest_checkpoint(model_dir))
    assert reader.get_variable_to_dtype_map()["shufflenet_v1/first_conv/kernel"] == tf.float32
