"""Clear errors and notes instead of tracebacks or silence (issue 24, the low items): a plugin's logits of the wrong
width, evaluations after a resume with another batch, --replicas with --workers, a changed --precision_mode, and
TF 2.21's cuInit line on a CPU-only run."""
import re

import pytest

from modelzoo_shufflenet import models
from registry import hparams as hp
from registry import spec
from registry.data.demo import demo_data_path
from registry.engine import runner

MODEL = models.SHUFFLENETV1_G3
DEMO = demo_data_path()


def demo_hparams(**overrides):
    return hp.resolve(MODEL, preset="demo", set_args=["%s=%s" % kv for kv in overrides.items()])


def _quiet(*args, **kwargs):
    pass


class ExtraLogit(object):
    """ShuffleNet, but its build_model gives num_classes + 1 logits (a plugin's off-by-one background class)."""

    def __getattr__(self, name):
        return getattr(MODEL, name)

    def build_model(self, images, is_training, hparams):
        return MODEL.build_model(images, is_training, dict(hparams, num_classes=hparams["num_classes"] + 1))


def test_7_logits_of_the_wrong_width_are_the_plugins_contract_violation(tmp_path):
    params = demo_hparams()
    with pytest.raises(spec.ContractError) as err:
        runner.train(ExtraLogit(), params, DEMO, str(tmp_path / "run"), max_steps=1, skip_eval=True, log=_quiet)
    classes = params["num_classes"]
    assert re.fullmatch(r"model 'ExtraLogit' breaks the plugin contract:\n  - build_model returned logits of shape "
                        r"\[(\d+|\?), %d\] for (\d+|\?) images; the contract is \[N, num_classes\] = \[(\d+|N), %d\] "
                        r"\(num_classes from the hparams\)\. Fix the plugin's last layer to give num_classes outputs, "
                        r"or set num_classes to what it gives" % (classes + 1, classes), str(err.value)), str(err.value)


def test_8_after_a_resume_with_another_global_batch_evaluations_stay_on_epoch_boundaries(tmp_path):
    """A run of global batch 64 (22 steps an epoch) resumed at step 33 (epoch 1.5) with batch 32 (44 steps an
    epoch): evaluations every epoch fall at epochs 2, 3, ... (steps 55, 99, ...), not at steps 44, 88 (epoch 1.75,
    2.75), which count the new segment's epochs from step 0."""
    from registry.engine import devices, segments
    model_dir = str(tmp_path)
    first = demo_hparams()
    segments.write(model_dir, [{"step": 0, "epoch": 0.0, "global_batch": 64,
                                "steps_per_epoch": runner.schedule.Plan(first).steps_per_epoch}])
    params = demo_hparams(batch_size=32)
    plan, _ = segments.resume(model_dir, params, 1, 33, _quiet)
    assert plan.steps_per_epoch == 2 * runner.schedule.Plan(first).steps_per_epoch == 44
    targets = runner._eval_steps(plan, 33, 1.0, plan.total_steps, devices.resolve("cpu"))
    assert [round(plan.epoch(t), 6) for t in targets] == [float(e) for e in range(2, 31)]
    assert targets[:2] == [55, 99] and targets[-1] == plan.total_steps


def test_9_replicas_with_workers_is_a_clear_error(tmp_path, capsys):
    from registry import cli
    code = cli.main(["train", "shufflenetv1_g3", "--workers", "2", "--replicas", "2", "--max_steps", "1",
                     "--skip_eval", "--set", "image_size=64", "--model_dir", str(tmp_path / "run")])
    assert code == 2
    assert ("zoo-run train: error: --replicas 2 with 2 workers is not supported: each worker trains one replica (the "
            "global batch is batch_size x workers). For 4 replicas in all, run --workers 4, or --replicas 4 in one "
            "process") in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_10_a_changed_precision_mode_on_resume_gets_a_note(tmp_path):
    from registry.engine import devices
    model_dir = str(tmp_path / "run")
    params = demo_hparams(image_size=64)
    runner.train(MODEL, params, DEMO, model_dir, max_steps=1, skip_eval=True, log=_quiet)
    lines = []
    runner.train(MODEL, params, DEMO, model_dir, max_steps=1, skip_eval=True, log=lines.append,
                 settings=devices.resolve("cpu", "allow_mix_precision"))
    assert ("note: --precision_mode differs from this model dir's previous run: float32 (the default) -> "
            "allow_mix_precision (the compute precision follows the new mode; a checkpoint without the loss scale a "
            "mode needs does not fit it, and the resume check names it)") in lines, lines
    assert not [line for line in lines if line.startswith("note: hparams differ")]
