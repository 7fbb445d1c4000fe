"""modelzoo-resnet: ResNet-50 v1.5 published to the zoo runner (`zoo-run`) as `resnet50_v1_5`.

A separate distribution: it registers its network in the `modelzoo.models` entry-point group and
needs the runner's `registry` package (and TensorFlow) at run time. They are not listed in
install_requires because the runner is not on a package index: install the zoo first
(`pip install -e .` at the repository root), then this folder (`pip install ./examples/resnet50`).
"""
from setuptools import setup

setup(
    name="modelzoo-resnet",
    version="0.1.0",
    description="ResNet-50 v1.5 (TensorFlow official layout) as a plugin of the modelzoo runner",
    packages=["modelzoo_resnet"],
    package_data={"modelzoo_resnet": ["modelzoo_level.txt"]},
    entry_points={"modelzoo.models": ["resnet50_v1_5 = modelzoo_resnet.models:RESNET50_V1_5"]},
)
