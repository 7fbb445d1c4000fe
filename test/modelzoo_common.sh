# Shared by the ModelZoo scripts (train_full_1p.sh, train_performance_1p.sh, train_full_8p.sh):
# flag parsing, output layout under test/output/$ASCEND_DEVICE_ID/, and the closing report, which is
# read from the runner's run_summary.json (never grepped from log text).

test_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# zoo-run: $ZOO_RUN, else the one on the PATH (an active venv), else the repository's lane venv (tf1 first:
# the Ascend lane), as `make install` or `make install STACK=tf2` made it.
if [ -z "$ZOO_RUN" ]; then
    for candidate in "$(command -v zoo-run)" "$test_dir/../.venv/tf1/bin/zoo-run" "$test_dir/../.venv/tf2/bin/zoo-run"; do
        if [ -n "$candidate" ] && [ -x "$candidate" ]; then ZOO_RUN=$candidate; break; fi
    done
    ZOO_RUN=${ZOO_RUN:-zoo-run}
fi
export ASCEND_DEVICE_ID=${ASCEND_DEVICE_ID:-0}

usage() {
    cat <<USAGE
usage: $(basename "$0") --data_path=DIR [options]

  --data_path=DIR          TF-slim TFRecords: train-*-of-*, validation-*-of-*        (required)
  --network=NAME           a network registered with zoo-run (default: $Network; see 'zoo-run list')
  --precision_mode=MODE    allow_mix_precision (NPU default) | allow_fp32_to_fp16 | force_fp16 |
                           must_keep_origin_dtype | force_fp32
  --batch_size=N           per-device batch (default: the recipe's)
  --epochs=N               training length in epochs (default: the recipe's)
  --steps=N                stop after N steps ($default_steps_text)
  --preset=NAME            a named recipe of the model (e.g. demo, for the bundled digits)
  --device=DEV             auto (default: npu if npu_bridge imports, else gpu, else cpu) | cpu | gpu | npu
  --over_dump              NPU: dump overflowing operators to test/output/\$ASCEND_DEVICE_ID/overflow_dump
  --data_dump_flag         NPU: dump operator data to test/output/\$ASCEND_DEVICE_ID/data_dump
  --profiling              NPU: training-trace profile in test/output/\$ASCEND_DEVICE_ID/profiling
  -h, --help               this help

Logs, checkpoints and \${CaseName}.log go to test/output/\$ASCEND_DEVICE_ID/ (ASCEND_DEVICE_ID defaults to 0).
USAGE
}

# expand_tilde PATH: PATH with a leading ~ or ~user expanded (bash leaves --flag=~/x as it is).
expand_tilde() {
    local path=$1 user home
    case "$path" in
        "~"|"~/"*) echo "$HOME${path:1}" ;;
        "~"*)
            user=${path%%/*}
            user=${user:1}
            home=$(getent passwd "$user" 2>/dev/null | cut -d: -f6)
            if [ -z "$home" ]; then echo "$path"
            elif [ "${path#*/}" = "$path" ]; then echo "$home"
            else echo "$home/${path#*/}"
            fi ;;
        *) echo "$path" ;;
    esac
}

parse_args() {
    data_path="" precision_mode="" batch_size="" epochs="" steps="$default_steps" preset="" device="auto"
    over_dump=0 data_dump_flag=0 profiling=0
    for arg in "$@"; do
        case "$arg" in
            --data_path=*) data_path=$(expand_tilde "${arg#*=}") ;;
            --network=*) Network="${arg#*=}" ;;
            --precision_mode=*) precision_mode="${arg#*=}" ;;
            --batch_size=*) batch_size="${arg#*=}" ;;
            --epochs=*) epochs="${arg#*=}" ;;
            --steps=*) steps="${arg#*=}" ;;
            --preset=*) preset="${arg#*=}" ;;
            --device=*) device="${arg#*=}" ;;
            --over_dump) over_dump=1 ;;
            --data_dump_flag) data_dump_flag=1 ;;
            --profiling) profiling=1 ;;
            -h|--help) usage; exit 0 ;;
            *) echo "error: unknown argument '$arg'" >&2; usage >&2; exit 1 ;;
        esac
    done
    if [ -z "$data_path" ]; then
        echo "error: --data_path=DIR is required (a directory of TF-slim TFRecords; build one with" \
             "'zoo-run data build SRC OUT --split train')" >&2
        exit 1
    fi
    if [ ! -d "$data_path" ]; then
        echo "error: --data_path=$data_path is not a directory" >&2
        exit 1
    fi
}

# device_output_dir: where this device's logs and checkpoints go.
device_output_dir() {
    echo "${MODELZOO_OUTPUT_ROOT:-$test_dir/output}/$ASCEND_DEVICE_ID"
}

# run_training KIND [extra zoo-run train arguments...]: trains, then prints the ModelZoo closing lines.
run_training() {
    local kind=$1
    shift
    output_dir="$(device_output_dir)"
    model_dir="$output_dir/ckpt_$kind"
    mkdir -p "$output_dir"
    local args=(train "$Network" --data_path "$data_path" --model_dir "$model_dir" --device "$device")
    [ -n "$precision_mode" ] && args+=(--precision_mode "$precision_mode")
    [ -n "$batch_size" ] && args+=(--set "batch_size=$batch_size")
    [ -n "$epochs" ] && args+=(--set "epochs=$epochs")
    [ -n "$steps" ] && args+=(--max_steps "$steps")
    [ -n "$preset" ] && args+=(--preset "$preset")
    [ "$over_dump" = 1 ] && args+=(--over_dump --dump_path "$output_dir/overflow_dump")
    [ "$data_dump_flag" = 1 ] && args+=(--dump_path "$output_dir/data_dump")
    [ "$profiling" = 1 ] && args+=(--profiling "$output_dir/profiling")
    local log="$output_dir/train_$ASCEND_DEVICE_ID.log"
    local start end status
    start=$(date +%s.%N)
    echo "device $ASCEND_DEVICE_ID: $ZOO_RUN ${args[*]} $*  (log: $log)"
    "$ZOO_RUN" "${args[@]}" "$@" > "$log" 2>&1
    status=$?
    end=$(date +%s.%N)
    if [ $status -ne 0 ]; then
        echo "error: training failed (exit $status); the end of $log:" >&2
        tail -n 5 "$log" >&2
        exit $status
    fi
    e2e=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f", b - a }')
    "$ZOO_RUN" modelzoo-report "$Network" --model_dir "$model_dir" --kind "$kind" --e2e_seconds "$e2e" \
        --output_dir "$output_dir" | tee -a "$log"
}

# run_8p KIND [extra zoo-run train arguments...]: one process per Ascend card of the host (RANK_ID =
# ASCEND_DEVICE_ID = 0..7, RANK_SIZE=8, the HCCL rank table in RANK_TABLE_FILE), each as run_training;
# a perf run starts every card afresh. Exits non-zero if any card failed.
run_8p() {
    local kind=$1
    shift
    if [ -z "$RANK_TABLE_FILE" ] || [ ! -f "$RANK_TABLE_FILE" ]; then
        echo "error: set RANK_TABLE_FILE to the HCCL rank table JSON of the 8 cards" >&2
        exit 1
    fi
    export RANK_SIZE=8
    local pids=() id pid status=0
    for id in 0 1 2 3 4 5 6 7; do
        ( export ASCEND_DEVICE_ID=$id RANK_ID=$id; device=npu
          [ "$kind" = perf ] && rm -rf "$(device_output_dir)/ckpt_perf"
          run_training "$kind" "$@" ) &
        pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "$pid" || status=1; done
    exit $status
}
