"""One distribution: the generic zoo runner (`registry`) and the ShuffleNetV1 plugin.

The plugin is published to the runner only through the `modelzoo.models`
entry-point group; any other distribution can register networks the same way.
"""
from setuptools import find_packages, setup

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

setup(
    name="modelzoo-shufflenet",
    version="0.1.0",
    description="ShuffleNetV1 for TensorFlow 1.15 / Ascend ModelZoo, as a plugin of a generic zoo runner",
    long_description=open("README.md").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.7,<3.8",
    packages=find_packages(include=["registry", "registry.*", "modelzoo_shufflenet", "modelzoo_shufflenet.*"]),
    package_data={
        "modelzoo_shufflenet": ["modelzoo_level.txt"],
        "registry": ["data/demo/*"],
    },
    install_requires=[
        "tensorflow==1.15.0",
        "protobuf<3.21",
        "stevedore==3.5.2",
        "pyyaml",
        "numpy",
        "pillow",   # EXIF orientation, TIFF and WebP of users' image files (registry/data/images.py)
    ],
    extras_require={"test": ["pytest"]},
    entry_points={
        "console_scripts": ["zoo-run = registry.cli:main"],
        "modelzoo.models": [
            "%s = modelzoo_shufflenet.models:%s" % item for item in SHUFFLENET_VARIANTS.items()
        ],
    },
)
