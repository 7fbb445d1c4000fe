"""Dev-time generator of the committed test data under test/data/ (needs PyTorch; the runtime and the
tests never do).

It holds its own PyTorch implementation of the reference network, Megvii ShuffleNet-Series
`ShuffleNetV1` (same module structure, hence the same state_dict names: `first_conv.0/1`,
`features.N.branch_main_1.{0,1,3,4}`, `features.N.branch_main_2.{0,1}`, `classifier.0`), with a
free channel plan so that a tiny-width variant keeps the files small. From it, it writes:

- shufflenetv1_tiny_g3_zip.pth.tar, shufflenetv1_tiny_g3_legacy.pth.tar: the tiny variant's weights
  as the official files are saved, `torch.save({'state_dict': {'module.' + name: tensor}})` (what
  nn.DataParallel gives), in PyTorch's zip layout and in the legacy (pre-1.6) layout;
- shufflenetv1_tiny_g3_inputs.npy: float32 [N, 64, 64, 3] inputs in the reference's convention
  (BGR, 0..255, no mean/std), NHWC (the reference's NCHW input transposed);
- shufflenetv1_tiny_g3_logits.npy: float32 [N, classes]: the reference's eval-mode logits on them;
- shufflenetv1_tiny_g3.json: the tiny variant's channel plan, classes, input size, torch version;
- shufflenetv1_g3_1.0x_state_dict_shapes.json: {name: shape} of the full-size 1.0x g3 reference
  with 1000 classes (checks the name/shape mapping of the real variant without a 7 MB file).

With --imagenet_classes_from TIMM_WHEEL it also writes registry/deploy/imagenet_classes.py, the
1000 ImageNet-1k synsets in sorted order (the class index of torchvision's ImageFolder, the
reference's, and TF-slim's label - 1) with their WordNet lemmas, taken from the data files of a timm
wheel (`pip download timm --no-deps`; Apache-2.0).

    python3.11 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch==2.13.0 numpy
    /tmp/torchenv/bin/python scripts/make_reference_weights.py [--imagenet_classes_from timm-*.whl]
"""
import argparse
import collections
import json
import os
import zipfile

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(REPO, "test", "data")

TINY_CHANNELS = (12, 48, 96, 192)       # first conv, stages 2-4 (1.0x g3 is 24, 240, 480, 960)
TINY_GROUPS = 3
TINY_CLASSES = 10
TINY_SIZE = 64
NUM_INPUTS = 3
G3_1_0X_CHANNELS = (24, 240, 480, 960)


class ReferenceUnit(nn.Module):
    """One unit of the reference: pw group conv, BN, ReLU, dw conv, BN | shuffle | pw-linear group conv, BN."""

    def __init__(self, inp, oup, group, first_group, stride):
        super().__init__()
        self.stride, self.group = stride, group
        mid = oup // 4
        out = oup - inp if stride == 2 else oup
        self.branch_main_1 = nn.Sequential(
            nn.Conv2d(inp, mid, 1, 1, 0, groups=1 if first_group else group, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False),
            nn.BatchNorm2d(mid),
        )
        self.branch_main_2 = nn.Sequential(
            nn.Conv2d(mid, out, 1, 1, 0, groups=group, bias=False),
            nn.BatchNorm2d(out),
        )
        if stride == 2:
            self.branch_proj = nn.AvgPool2d(3, 2, 1)  # count_include_pad=True, as PyTorch's default

    def shuffle(self, x):
        n, c, h, w = x.shape
        return x.reshape(n, c // self.group, self.group, h, w).permute(0, 2, 1, 3, 4).reshape(n, c, h, w)

    def forward(self, x):
        y = self.branch_main_1(x)
        if self.group > 1:
            y = self.shuffle(y)
        y = self.branch_main_2(y)
        if self.stride == 1:
            return F.relu(x + y)
        return torch.cat((self.branch_proj(x), F.relu(y)), 1)


class ReferenceShuffleNetV1(nn.Module):
    def __init__(self, channels, group, n_class):
        super().__init__()
        first, stages = channels[0], channels[1:]
        self.last_channels = stages[-1]
        self.first_conv = nn.Sequential(nn.Conv2d(3, first, 3, 2, 1, bias=False), nn.BatchNorm2d(first),
                                        nn.ReLU(inplace=True))
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        units, inp = [], first
        for stage, (repeats, oup) in enumerate(zip((4, 8, 4), stages)):
            for i in range(repeats):
                units.append(ReferenceUnit(inp, oup, group, stage == 0 and i == 0, 2 if i == 0 else 1))
                inp = oup
        self.features = nn.Sequential(*units)
        self.classifier = nn.Sequential(nn.Linear(self.last_channels, n_class, bias=False))

    def forward(self, x):
        x = self.maxpool(self.first_conv(x))
        x = self.features(x)
        # The reference's AvgPool2d(7) on its 7x7 map at 224; a global mean also serves the 64x64 tiny test.
        x = x.mean(dim=(2, 3))
        return self.classifier(x)


def randomise(model, generator):
    """Weights unlike the initialisation (so that every mapping error shows), BN statistics from data."""
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, nn.Conv2d):
                fan_in = module.weight[0].numel()
                module.weight.normal_(0, (2.0 / fan_in) ** 0.5, generator=generator)
            elif isinstance(module, nn.Linear):
                module.weight.normal_(0, 0.1, generator=generator)
            elif isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5, generator=generator)
                module.bias.normal_(0, 0.2, generator=generator)
                module.momentum = None  # cumulative average over the calibration batches
        model.train()
        for _ in range(4):
            model(torch.rand(8, 3, TINY_SIZE, TINY_SIZE, generator=generator) * 255.0)
        model.eval()


def save(state_dict, path, zip_format):
    wrapped = {"state_dict": collections.OrderedDict(("module." + k, v) for k, v in state_dict.items())}
    torch.save(wrapped, path, _use_new_zipfile_serialization=zip_format)
    assert zipfile.is_zipfile(path) == zip_format
    print("wrote %s (%d bytes)" % (os.path.relpath(path, REPO), os.path.getsize(path)))


def write_tiny():
    generator = torch.Generator().manual_seed(20240601)
    model = ReferenceShuffleNetV1(TINY_CHANNELS, TINY_GROUPS, TINY_CLASSES)
    randomise(model, generator)
    inputs = torch.rand(NUM_INPUTS, 3, TINY_SIZE, TINY_SIZE, generator=generator) * 255.0  # BGR 0..255
    with torch.no_grad():
        logits = model(inputs)
    state = model.state_dict()
    save(state, os.path.join(OUT, "shufflenetv1_tiny_g3_zip.pth.tar"), True)
    save(state, os.path.join(OUT, "shufflenetv1_tiny_g3_legacy.pth.tar"), False)
    np.save(os.path.join(OUT, "shufflenetv1_tiny_g3_inputs.npy"), inputs.permute(0, 2, 3, 1).numpy())
    np.save(os.path.join(OUT, "shufflenetv1_tiny_g3_logits.npy"), logits.numpy())
    with open(os.path.join(OUT, "shufflenetv1_tiny_g3.json"), "w") as f:
        json.dump({"channels": list(TINY_CHANNELS), "groups": TINY_GROUPS, "num_classes": TINY_CLASSES,
                   "image_size": TINY_SIZE, "num_inputs": NUM_INPUTS, "torch_version": torch.__version__,
                   "input_convention": "BGR, 0..255, no mean/std (NHWC in the .npy)",
                   "num_tensors": len(state)}, f, indent=2)
    print("tiny variant: %d tensors, logits range %.3f..%.3f"
          % (len(state), float(logits.min()), float(logits.max())))


def write_full_size_shapes():
    model = ReferenceShuffleNetV1(G3_1_0X_CHANNELS, 3, 1000)
    shapes = collections.OrderedDict((k, list(v.shape)) for k, v in model.state_dict().items())
    path = os.path.join(OUT, "shufflenetv1_g3_1.0x_state_dict_shapes.json")
    with open(path, "w") as f:
        json.dump(shapes, f, indent=0)
    params = sum(p.numel() for p in model.parameters())
    print("wrote %s: %d tensors, %d parameters" % (os.path.relpath(path, REPO), len(shapes), params))


def write_imagenet_classes(wheel):
    with zipfile.ZipFile(wheel) as archive:
        synsets = archive.read("timm/data/_info/imagenet_synsets.txt").decode().split()
        lemmas = dict(line.split("\t", 1) for line in
                      archive.read("timm/data/_info/imagenet_synset_to_lemma.txt").decode().splitlines() if line)
    assert len(synsets) == 1000 and synsets == sorted(synsets)
    path = os.path.join(REPO, "registry", "deploy", "imagenet_classes.py")
    with open(path, "w") as f:
        f.write('"""The 1000 ImageNet-1k (ILSVRC-2012) classes in sorted synset order: class index i is the i-th\n'
                "synset (torchvision ImageFolder's and the official checkpoints' index; TF-slim's label i + 1).\n"
                "Names are WordNet lemmas. Generated by scripts/make_reference_weights.py from the data files\n"
                'of the timm %s wheel (Apache-2.0)."""\n\n' % os.path.basename(wheel).split("-")[1])
        f.write("CLASSES = (\n")
        for synset in synsets:
            f.write("    (%r, %r),\n" % (synset, lemmas[synset].strip()))
        f.write(")\n")
    print("wrote %s" % os.path.relpath(path, REPO))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--imagenet_classes_from", metavar="TIMM_WHEEL",
                        help="also write registry/deploy/imagenet_classes.py from this timm wheel")
    args = parser.parse_args()
    os.makedirs(OUT, exist_ok=True)
    torch.set_num_threads(1)
    write_tiny()
    write_full_size_shapes()
    if args.imagenet_classes_from:
        write_imagenet_classes(args.imagenet_classes_from)


if __name__ == "__main__":
    main()
