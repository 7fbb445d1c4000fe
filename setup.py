"""One distribution: the generic zoo runner (`registry`) and the ShuffleNetV1 plugin.

The plugin is published to the runner only through the `modelzoo.models`
entry-point group; any other distribution can register networks the same way.
"""
import sys

from setuptools import find_packages, setup

# The two TensorFlow lanes (registry/tf_compat.py): TF 1.15 exists for Python <= 3.7 only, TF 2.21 for 3.10-3.13.
SUPPORTED_PYTHONS = "3.7 (lane tf1: tensorflow==1.15.0) or 3.10-3.13 (lane tf2: tensorflow==2.21.0)"
if sys.version_info[:2] != (3, 7) and not (3, 10) <= sys.version_info[:2] <= (3, 13):
    sys.exit("error: modelzoo-shufflenet runs on Python %s; this is Python %d.%d. Install one of those (e.g. "
             "'pyenv install 3.13') and run pip with it." % ((SUPPORTED_PYTHONS,) + sys.version_info[:2]))

SHUFFLENET_VARIANTS = {
    "shufflenetv1_g1": "SHUFFLENETV1_G1",
    "shufflenetv1_g2": "SHUFFLENETV1_G2",
    "shufflenetv1_g3": "SHUFFLENETV1_G3",
    "shufflenetv1_g4": "SHUFFLENETV1_G4",
    "shufflenetv1_g8": "SHUFFLENETV1_G8",
    "shufflenetv1_g3_0.5x": "SHUFFLENETV1_G3_0_5X",
    "shufflenetv1_g3_1.5x": "SHUFFLENETV1_G3_1_5X",
    "shufflenetv1_g3_2.0x": "SHUFFLENETV1_G3_2_0X",
    "shufflenetv1_g8_0.5x": "SHUFFLENETV1_G8_0_5X",
    "shufflenetv1_g8_1.5x": "SHUFFLENETV1_G8_1_5X",
    "shufflenetv1_g8_2.0x": "SHUFFLENETV1_G8_2_0X",
}

# The `onnx` extra (zoo-run export --format onnx, zoo-run perf --runtime onnxruntime), pinned per TensorFlow lane.
# tf1 (Python 3.7, TF 1.15, protobuf<3.21): the last onnx and onnxruntime releases for Python 3.7, and tf2onnx 1.14.0,
# which converts TF 1.15 graphs. tf2 (Python 3.10-3.13, TF 2.21, protobuf 7, ml-dtypes 0.7): tf2onnx 1.17.0 and
# onnx 1.23.2 import and convert beside it; onnxruntime 1.32.0 has no Python 3.10 wheel, so 3.10 gets 1.23.2.
ONNX = [
    "tf2onnx==1.14.0; python_version < '3.8'",
    "onnx==1.14.1; python_version < '3.8'",
    "onnxruntime==1.14.1; python_version < '3.8'",
    "tf2onnx==1.17.0; python_version >= '3.10'",
    "onnx==1.23.2; python_version >= '3.10'",
    "onnxruntime==1.23.2; python_version == '3.10'",
    "onnxruntime==1.32.0; python_version >= '3.11'",
]

# The `openvino` extra (zoo-run export --format openvino, zoo-run perf --runtime openvino; with the `onnx` extra, which
# converts): 2026.4.1 has wheels for Python 3.10-3.13 beside numpy 2.x; 2023.1.0 is the last release for Python 3.7
# (lane tf1). Both read the project's opset-13 ONNX and installed without conflicts beside each lane's pins.
# NNCF (INT8 post-training quantization, `--precision int8`): 3.4.0 installs beside openvino 2026.4.1 on Python
# 3.10-3.13 (it needs numpy<2.5, and brings scipy, scikit-learn, networkx). Lane tf1 gets none: nncf 2.6.0 is the
# release paired with openvino 2023.1 and pip offers it for Python 3.7, but it was not tried beside TF 1.15's pins;
# bf16/INT8 inference is lane tf2's and lane tf1 says so (registry/tf_compat.py).
OPENVINO = [
    "openvino==2023.1.0; python_version < '3.8'",
    "openvino==2026.4.1; python_version >= '3.10'",
    "nncf==3.4.0; python_version >= '3.10'",
]

setup(
    name="modelzoo-shufflenet",
    version="0.1.0",
    description="ShuffleNetV1 for TensorFlow 1.15 (Ascend ModelZoo) to 2.21, as a plugin of a generic zoo runner",
    long_description=open("README.md").read(),
    long_description_content_type="text/markdown",
    # Two lanes, one code base (registry/tf_compat.py): Python 3.7 gets the card's pinned TF 1.15 stack
    # (the only one with Ascend's npu_bridge); Python 3.10-3.13 gets TF 2.21. Both train on graph-mode sessions.
    python_requires=">=3.7,!=3.8.*,!=3.9.*,<3.14",
    packages=find_packages(include=["registry", "registry.*", "modelzoo_shufflenet", "modelzoo_shufflenet.*"]),
    package_data={
        "modelzoo_shufflenet": ["modelzoo_level.txt"],
        "registry": ["data/demo/*", "deploy/tf1_15_ops.json"],
    },
    install_requires=[
        # lane tf1: the design card's pinned stack
        "tensorflow==1.15.0; python_version < '3.8'",
        "protobuf<3.21; python_version < '3.8'",
        "stevedore==3.5.2; python_version < '3.8'",
        # lane tf2: current CPUs (oneDNN) and CUDA 12 GPUs
        "tensorflow==2.21.0; python_version >= '3.10'",
        "stevedore>=3.5.2; python_version >= '3.10'",
        "pyyaml",
        "numpy",
        "python-hostlist",   # Slurm's hostlist syntax (node[006,011-013]) for `srun zoo-run train` (registry/engine/cluster.py)
        "pillow",   # EXIF orientation, colour profiles (ImageCms), TIFF and WebP of users' image files (registry/data/images.py)
    ],
    extras_require={
        "test": ["pytest"] + ONNX + OPENVINO,
        "onnx": ONNX,
        "openvino": ONNX + OPENVINO,   # its export converts through tf2onnx
        # NVIDIA GPUs on lane tf2: TF 2.21 with its CUDA 12.5 / cuDNN 9 wheels
        "gpu": ["tensorflow[and-cuda]==2.21.0; python_version >= '3.10'"],
    },
    entry_points={
        "console_scripts": ["zoo-run = registry.cli:main"],
        "modelzoo.models": [
            "%s = modelzoo_shufflenet.models:%s" % item for item in SHUFFLENET_VARIANTS.items()
        ],
    },
)
