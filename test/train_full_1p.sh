#!/bin/bash
# ModelZoo: full training of ShuffleNetV1 1.0x group 3 on one device, evaluated at the end.
# Rerunning resumes from test/output/$ASCEND_DEVICE_ID/ckpt_acc.
Network="shufflenetv1_g3"
default_steps="" default_steps_text="default: the whole schedule"
source "$(cd "$(dirname "$0")" && pwd)/modelzoo_common.sh"
parse_args "$@"
run_training acc
