"""Regenerates the bundled demo data in registry/data/demo/ (dev-time only; needs scikit-learn).

scikit-learn's handwritten digits (1,797 real 8x8 grayscale scans, 10 classes, from the UCI
"Optical Recognition of Handwritten Digits" set) are upscaled to 32x32, saved as RGB JPEG in
class folders 0..9, split 80/20 stratified with a fixed seed, and converted with the project's own
builder (`registry.data.builder`): labels 1..10 (digit d -> label d + 1), read with label_offset=1.

    .venv/bin/pip install scikit-learn && .venv/bin/python scripts/make_demo_data.py
"""
import argparse
import os
import shutil
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

SIZE = 32
QUALITY = 90
SEED = 0
NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(HERE), "registry", "data", "demo"))
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import sklearn
    from PIL import Image
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from registry.data import builder

    digits = load_digits()
    index = np.arange(len(digits.target))
    train_idx, val_idx = train_test_split(index, test_size=0.2, stratify=digits.target, random_state=SEED)
    tmp = tempfile.mkdtemp(prefix="demo-digits-")
    try:
        for split, chosen in (("train", train_idx), ("validation", val_idx)):
            for i in sorted(chosen):
                label = int(digits.target[i])
                folder = os.path.join(tmp, split, str(label))
                os.makedirs(folder, exist_ok=True)
                pixels = np.clip(digits.images[i] * (255.0 / 16.0), 0, 255).astype(np.uint8)
                image = Image.fromarray(pixels, "L").resize((SIZE, SIZE), Image.BICUBIC).convert("RGB")
                image.save(os.path.join(folder, "digit_%04d.jpg" % i), "JPEG", quality=QUALITY, optimize=True)
        names = os.path.join(tmp, "names.txt")
        with open(names, "w") as f:
            f.writelines("%d\tdigit %s\n" % (d, NAMES[d]) for d in range(10))

        if os.path.isdir(args.out):
            shutil.rmtree(args.out)
        os.makedirs(args.out)
        results = [builder.build(os.path.join(tmp, split), args.out, split, num_shards=shards,
                                 synset_names=names, workers=1, seed=SEED)
                   for split, shards in (("train", 2), ("validation", 1))]
    finally:
        shutil.rmtree(tmp)
    for name in os.listdir(args.out):                 # build state is not part of the shipped data
        path = os.path.join(args.out, name)
        if name.startswith(".build-"):
            shutil.rmtree(path)
        elif name.endswith("-build-report.txt"):
            os.remove(path)
    counts = {r.split: r.written for r in results}
    with open(os.path.join(args.out, "README.txt"), "w") as f:
        f.write("Demo data: scikit-learn %s load_digits() (UCI Optical Recognition of Handwritten Digits,\n"
                "1,797 real 8x8 scans, CC BY 4.0), upscaled to %dx%d bicubic, RGB JPEG quality %d (optimised Huffman tables), TF-slim\n"
                "TFRecords with labels 1..10 (digit d -> d + 1; read with label_offset=1).\n"
                "Stratified split (seed %d): train %d, validation %d images.\n"
                "Regenerate with: python scripts/make_demo_data.py\n"
                % (sklearn.__version__, SIZE, SIZE, QUALITY, SEED, counts["train"], counts["validation"]))
    total = sum(os.path.getsize(os.path.join(args.out, n)) for n in os.listdir(args.out))
    print("demo data in %s: train %d, validation %d images, %.2f MB"
          % (args.out, counts["train"], counts["validation"], total / 1e6))


if __name__ == "__main__":
    main()
