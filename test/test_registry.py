"""Discovery through real installed entry points, the plugin contract, and the CLI around them."""
import os
import subprocess
import sys
import textwrap

import pytest

from registry import discovery, hparams as hp, spec
from modelzoo_shufflenet import models

VARIANTS = ["shufflenetv1_g1", "shufflenetv1_g2", "shufflenetv1_g3", "shufflenetv1_g3_0.5x", "shufflenetv1_g3_1.5x",
            "shufflenetv1_g3_2.0x", "shufflenetv1_g4", "shufflenetv1_g8", "shufflenetv1_g8_0.5x",
            "shufflenetv1_g8_1.5x", "shufflenetv1_g8_2.0x"]


def test_installed_entry_points_register_every_variant():
    # other distributions may register more networks (make test installs examples/resnet50)
    assert [name for name in discovery.model_names() if name.startswith("shufflenetv1")] == VARIANTS
    plugins = discovery.load_all()
    assert [p.error for p in plugins] == [None] * len(plugins)
    assert discovery.get_model("shufflenetv1_g3") is models.SHUFFLENETV1_G3
    assert (models.SHUFFLENETV1_G8_0_5X.groups, models.SHUFFLENETV1_G8_0_5X.width) == (8, "0.5x")


def test_listing_and_loading_do_not_import_tensorflow():
    code = ("import sys; from registry import discovery; discovery.load_all(); "
            "print('tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, check=True, universal_newlines=True)
    assert out.stdout.strip() == "False"


def test_unknown_name_lists_close_matches_and_known_names():
    with pytest.raises(discovery.UnknownModelError) as err:
        discovery.get_model("shufflenetv1_g5")
    message = str(err.value)
    assert "Did you mean: shufflenetv1_g" in message
    assert "Registered models: " + ", ".join(discovery.model_names()) in message


class _Incomplete(object):
    level = {"FuncStatus": "OK", "PerfStatus": "GREAT"}
    metadata = {}

    def build_model(self, images):
        pass

    default_hparams = 3
    input_convention_hparams = "input_channel_order"


def test_contract_problems_name_every_breach():
    problems = spec.contract_problems(_Incomplete())
    assert problems == [
        "build_model must accept (images, is_training, hparams); it accepts (images)",
        "missing input_fn(mode, hparams, data_path, input_context)",
        "default_hparams is not callable (it is a int)",
        "level PerfStatus is 'GREAT', expected one of PERFECT|OK|POK|NOK",
        "level lacks PrecisionStatus (one of OK|POK|NOK)",
        "metadata lacks 'description'",
        "`input_convention_hparams` must be a tuple of hparam names, got 'input_channel_order'",
    ]
    with pytest.raises(spec.ContractError, match="model 'x' breaks the plugin contract"):
        spec.validate("x", _Incomplete())
    assert spec.contract_problems(models.SHUFFLENETV1_G3) == []


def test_level_file_is_shipped_and_parsed():
    level = models.read_level()
    assert list(level)[:3] == ["FuncStatus", "PerfStatus", "PrecisionStatus"]
    repo_level = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "modelzoo_level.txt")
    with open(repo_level) as f:
        assert spec.parse_level_file(f.read()) == level


@pytest.fixture
def broken_plugins(tmp_path):
    """A second distribution on sys.path registering two broken networks and one working one."""
    dist = tmp_path / "zoo_test_plugins-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: zoo-test-plugins\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(textwrap.dedent("""\
        [modelzoo.models]
        aaa_missing_module = zoo_no_such_module:MODEL
        aaa_exits = zoo_test_exits:MODEL
        aaa_bad_contract = zoo_test_plugin:INCOMPLETE
        aaa_working = zoo_test_plugin:WORKING
        """))
    (tmp_path / "zoo_test_plugin.py").write_text(textwrap.dedent("""\
        from modelzoo_shufflenet.models import SHUFFLENETV1_G3 as WORKING

        class Incomplete(object):
            level = {"FuncStatus": "OK", "PerfStatus": "OK", "PrecisionStatus": "OK"}
            metadata = {"description": "no build_model"}
            def input_fn(self, mode, hparams, data_path, input_context=None):
                pass
            def default_hparams(self):
                return {}

        INCOMPLETE = Incomplete()
        """))
    (tmp_path / "zoo_test_exits.py").write_text("import sys\nsys.exit(1)  # a script's habit, at import\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path)] + [p for p in [os.environ.get("PYTHONPATH")]
                                                                         if p]))
    return env


def test_list_shows_broken_plugins_and_the_rest_still_work(zoo_run, broken_plugins):
    out = subprocess.run([zoo_run, "list"], env=broken_plugins, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         universal_newlines=True)
    assert out.returncode == 0, out.stderr
    lines = {line.split()[0]: line for line in out.stdout.splitlines() if line.strip()}
    assert "BROKEN" in lines["aaa_missing_module"] and "No module named 'zoo_no_such_module'" in lines[
        "aaa_missing_module"]
    assert "BROKEN" in lines["aaa_bad_contract"] and "missing build_model" in lines["aaa_bad_contract"]
    assert "BROKEN" in lines["aaa_exits"] and "import failed: it called sys.exit(1) while being imported" in lines[
        "aaa_exits"]
    assert "Func:" in lines["aaa_working"] and "BROKEN" not in lines["aaa_working"]
    assert "Func:" in lines["shufflenetv1_g3"]
    assert "%d network(s) registered, 3 broken." % (len(discovery.model_names()) + 4) in out.stdout


def test_using_a_broken_plugin_is_a_clear_error(zoo_run, broken_plugins):
    out = subprocess.run([zoo_run, "describe", "aaa_bad_contract"], env=broken_plugins, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, universal_newlines=True)
    assert out.returncode == 2
    assert "model 'aaa_bad_contract' (zoo_test_plugin:INCOMPLETE) is broken" in out.stderr
    assert "Traceback" not in out.stderr


def test_describe_measures_the_graph(zoo_run):
    out = subprocess.run([zoo_run, "describe", "shufflenetv1_g3", "--set", "num_classes=10", "--image_size", "64"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    assert out.returncode == 0, out.stderr
    # 1,864,728 - 960 * (1000 - 10) classifier weights
    assert "trainable parameters  914,328" in out.stdout
    assert "reference_top1             0.678" in out.stdout
    assert "num_classes                10" in out.stdout


def test_cli_help_lists_commands(zoo_run):
    out = subprocess.run([zoo_run, "--help"], stdout=subprocess.PIPE, universal_newlines=True)
    for command in ("list", "describe", "data"):
        assert "\n    %s " % command in out.stdout or "\n    %s\n" % command in out.stdout


def test_hparams_layering_and_typing(tmp_path):
    config = tmp_path / "recipe.yaml"
    config.write_text("learning_rate: 0.1\nepochs: 3\n")
    params = hp.resolve(models.SHUFFLENETV1_G3, preset="megvii", config_file=str(config),
                        set_args=["batch_size=64", "random_flip=false", "lr_schedule=linear"])
    assert params["learning_rate"] == 0.1 and isinstance(params["epochs"], float) and params["epochs"] == 3.0
    assert params["batch_size"] == 64 and params["random_flip"] is False
    assert params["weight_decay"] == 4e-5  # from the preset


@pytest.mark.parametrize("set_args,message", [
    (["learnig_rate=0.1"], "unknown hparam 'learnig_rate' (from --set). Did you mean learning_rate?"),
    (["batch_size=abc"], "hparam 'batch_size' (from --set) must be a int like 32, got 'abc'"),
    (["batch_size=1.5"], "must be a int like 32, got 1.5"),
    (["learning_rate=fast"], "hparam 'learning_rate' (from --set): could not convert string to float"),
    (["random_flip=maybe"], "not a boolean: 'maybe'"),
    (["epochs"], "--set expects key=value pairs, got 'epochs'"),
])
def test_hparam_errors_name_the_problem(set_args, message):
    with pytest.raises(hp.HParamsError) as err:
        hp.resolve(models.SHUFFLENETV1_G3, set_args=set_args)
    assert message in str(err.value)
    if "unknown" in message:
        assert "Valid keys: base_batch_size, batch_size" in str(err.value)


def test_unknown_preset_and_bad_yaml(tmp_path):
    with pytest.raises(hp.HParamsError, match="unknown preset 'fast'; this model has: demo, megvii"):
        hp.resolve(models.SHUFFLENETV1_G3, preset="fast")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(hp.HParamsError, match="must hold a mapping"):
        hp.resolve(models.SHUFFLENETV1_G3, config_file=str(bad))


def test_scientific_notation_is_a_float():
    params = hp.resolve(models.SHUFFLENETV1_G3, set_args=["weight_decay=4e-5", "learning_rate=1"])
    assert params["weight_decay"] == 4e-5 and params["learning_rate"] == 1.0


def test_default_hparams_must_hold_what_the_engine_reads():
    class NoRecipe(_Incomplete):
        def build_model(self, images, is_training, hparams):
            pass

        def input_fn(self, mode, hparams, data_path, input_context=None):
            pass

        def default_hparams(self):
            return {"batch_size": 32, "learning_rate": 0.1, "epochs": 1.0}

    problems = spec.contract_problems(NoRecipe())
    assert "default_hparams() lacks num_classes, image_size, num_train_images (every network needs batch_size, " \
           "learning_rate, epochs, num_classes, image_size, num_train_images)" in problems
