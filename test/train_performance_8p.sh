#!/bin/bash
# ModelZoo: data-parallel performance run on the 8 Ascend cards of one host (needs npu_bridge and an HCCL
# rank table): one process per card, RANK_ID = ASCEND_DEVICE_ID, a fresh short run without evaluation,
# logs in test/output/<id>/.
#   RANK_TABLE_FILE=/path/rank_table_8p.json bash test/train_performance_8p.sh --data_path=/data/imagenet-tfrecord
Network="shufflenetv1_g3"
default_steps=1000 default_steps_text="default: 1000"
source "$(cd "$(dirname "$0")" && pwd)/modelzoo_common.sh"
parse_args "$@"
run_8p perf --skip_eval
