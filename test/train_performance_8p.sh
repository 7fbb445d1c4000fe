#!/bin/bash
# ModelZoo: data-parallel performance run on the 8 Ascend cards of one host (needs npu_bridge and an HCCL
# rank table): one process per card, RANK_ID = ASCEND_DEVICE_ID, a fresh short run without evaluation,
# logs in test/output/<id>/.
#   RANK_TABLE_FILE=/path/rank_table_8p.json bash test/train_performance_8p.sh --data_path=/data/imagenet-tfrecord
Network="shufflenetv1_g3"
default_steps=1000 default_steps_text="default: 1000"
source "$(cd "$(dirname "$0")" && pwd)/modelzoo_common.sh"
parse_args "$@"
if [ -z "$RANK_TABLE_FILE" ] || [ ! -f "$RANK_TABLE_FILE" ]; then
    echo "error: set RANK_TABLE_FILE to the HCCL rank table JSON of the 8 cards" >&2
    exit 1
fi
export RANK_SIZE=8
pids=()
for id in 0 1 2 3 4 5 6 7; do
    ( export ASCEND_DEVICE_ID=$id RANK_ID=$id; device=npu
      rm -rf "$(device_output_dir)/ckpt_perf"; run_training perf --skip_eval ) &
    pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
exit $status
