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
