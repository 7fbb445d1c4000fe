#!/bin/bash
# ModelZoo: performance run of ShuffleNetV1 1.0x group 3 on one device: a fresh short run, no evaluation.
Network="shufflenetv1_g3"
default_steps=1000 default_steps_text="default: 1000"
source "$(cd "$(dirname "$0")" && pwd)/modelzoo_common.sh"
parse_args "$@"
rm -rf "$(device_output_dir)/ckpt_perf"
run_training perf --skip_eval
