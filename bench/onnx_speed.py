"""Inference images/sec of any ONNX model in onnxruntime or OpenVINO (dev-only; numpy and the runtime only).

bench/cpu_speed.py runs it with the python of the project's venv on the PyTorch reference's ONNX export
(bench/torch_reference.py --export_onnx), so that export and the project's own (`zoo-run perf --runtime
onnxruntime|openvino`) are timed by the same runtime:

    .venv/tf2/bin/python bench/onnx_speed.py torch_reference.onnx --batch_size 32 --json out.json
    .venv/tf2/bin/python bench/onnx_speed.py torch_reference.onnx --runtime openvino

Input: one batch of standard-normal float32 values in the model's input shape, its dynamic dimension
set to --batch_size. Session: onnxruntime's defaults (CPU, all graph optimisations, one thread per
physical core), as `zoo-run perf --runtime onnxruntime`; OpenVINO as `zoo-run perf --runtime openvino`
(CPU, float32 inference precision, the latency hint: every core on the one request). As there: warm-up
steps, then the median of timed windows.
"""
import argparse
import json
import statistics
import time

import numpy as np


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", help="an .onnx file with one float32 input")
    parser.add_argument("--runtime", choices=["onnxruntime", "openvino"], default="onnxruntime")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()

    if args.runtime == "onnxruntime":
        import onnxruntime
        session = onnxruntime.InferenceSession(args.model, providers=["CPUExecutionProvider"])
        (spec,) = session.get_inputs()
        shape = [d if isinstance(d, int) else args.batch_size for d in spec.shape]
        feed = {spec.name: np.random.RandomState(0).randn(*shape).astype(np.float32)}
        step = lambda: session.run(None, feed)
        runtime = "onnxruntime %s" % onnxruntime.__version__
    else:
        import openvino
        compiled = openvino.Core().compile_model(args.model, "CPU", {"INFERENCE_PRECISION_HINT": "f32",
                                                                     "PERFORMANCE_HINT": "LATENCY"})
        request = compiled.create_infer_request()
        shape = [args.batch_size if d.is_dynamic else d.get_length() for d in compiled.input(0).get_partial_shape()]
        feed = {0: np.random.RandomState(0).randn(*shape).astype(np.float32)}
        step = lambda: request.infer(feed)
        runtime = "openvino %s (float32)" % openvino.__version__.split("-")[0]
    for _ in range(args.warmup):
        step()
    per_window = max(1, args.steps // args.windows)
    durations = []
    for _ in range(args.windows):
        start = time.perf_counter()
        for _ in range(per_window):
            step()
        durations.append((time.perf_counter() - start) / per_window)
    report = {"runtime": runtime, "model": args.model, "input_shape": shape,
              "batch_size": args.batch_size, "infer_images_per_sec": args.batch_size / statistics.median(durations)}
    print(json.dumps(report))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
