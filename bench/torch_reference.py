"""PyTorch reference throughput of ShuffleNetV1 g3 1.0x (dev-only comparison, never a dependency).

Runs in a separate Python 3.11 venv with the CPU build of torch 2.13.0:

    python3.11 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch==2.13.0 numpy
    /tmp/torchenv/bin/python bench/torch_reference.py --json torch.json
    /tmp/torchenv/bin/python bench/torch_reference.py --export_onnx torch_reference.onnx   # for onnxruntime

The network is the reference's module structure (scripts/make_reference_weights.py), NCHW, in
PyTorch's defaults (threads = cores). Train: SGD with momentum 0.9, weight decay, cross-entropy with
label smoothing 0.1, on one fixed random batch; infer: eval mode under torch.inference_mode(). As
`zoo-run perf`: warm-up steps, then the median of timed windows.

--export_onnx PATH writes the eval-mode network with torch.onnx.export instead (the TorchScript-based
exporter, which needs no other package; opset 13, input `input` float32 [N, 3, S, S] with N dynamic,
output `logits`), for bench/onnx_speed.py.
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch
import torch.nn as nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts"))
from make_reference_weights import G3_1_0X_CHANNELS, ReferenceShuffleNetV1  # noqa: E402


def _median_step(step, warmup, steps, windows):
    for _ in range(warmup):
        step()
    per_window = max(1, steps // windows)
    durations = []
    for _ in range(windows):
        start = time.perf_counter()
        for _ in range(per_window):
            step()
        durations.append((time.perf_counter() - start) / per_window)
    return statistics.median(durations)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--mode", choices=["train", "infer", "both"], default="both")
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--export_onnx", metavar="PATH", help="write the network as ONNX instead of timing it")
    args = parser.parse_args()

    torch.manual_seed(0)
    model = ReferenceShuffleNetV1(G3_1_0X_CHANNELS, 3, 1000)
    images = torch.randn(args.batch_size, 3, args.image_size, args.image_size)
    if args.export_onnx:
        model.eval()
        torch.onnx.export(model, (images,), args.export_onnx, input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}}, opset_version=13, dynamo=False)
        print("wrote %s" % args.export_onnx)
        return
    labels = torch.randint(0, 1000, (args.batch_size,))
    report = {"framework": "pytorch %s" % torch.__version__, "threads": torch.get_num_threads(),
              "batch_size": args.batch_size, "image_size": args.image_size}
    if args.mode in ("train", "both"):
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
        criterion = nn.CrossEntropyLoss(label_smoothing=0.1)
        model.train()

        def train_step():
            optimizer.zero_grad(set_to_none=True)
            criterion(model(images), labels).backward()
            optimizer.step()

        seconds = _median_step(train_step, args.warmup, args.steps, args.windows)
        report["train_images_per_sec"] = args.batch_size / seconds
    if args.mode in ("infer", "both"):
        model.eval()

        def infer_step():
            with torch.inference_mode():
                model(images).argmax(1)

        seconds = _median_step(infer_step, args.warmup, args.steps, args.windows)
        report["infer_images_per_sec"] = args.batch_size / seconds
    print(json.dumps(report))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
