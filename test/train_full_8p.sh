#!/bin/bash
# ModelZoo: full data-parallel training on the 8 Ascend cards of one host (needs npu_bridge and an
# HCCL rank table): one process per card, RANK_ID = ASCEND_DEVICE_ID, logs in test/output/<id>/.
#   RANK_TABLE_FILE=/path/rank_table_8p.json bash test/train_full_8p.sh --data_path=/data/imagenet-tfrecord
Network="shufflenetv1_g3"
default_steps="" default_steps_text="default: the whole schedule"
source "$(cd "$(dirname "$0")" && pwd)/modelzoo_common.sh"
parse_args "$@"
run_8p acc
