#!/usr/bin/env bash
# Join the Ray head as a worker node that owns SEDSWEEP_GPUS_PER_WORKER of this host's GPUs.
#
# Docker keeps no GPU bookkeeping between containers: every replica of a compose service that
# reserves GPUs sees the same devices, so `docker compose up --scale ray-worker=N` would make N
# Ray nodes that all count GPU 0. Each worker started by this script instead claims free GPUs
# with an flock on $SEDSWEEP_GPU_LOCK_DIR/gpu<i>.lock (a volume shared by the replicas of one
# host) and hands only those to Ray (CUDA_VISIBLE_DEVICES, --num-gpus). The locks belong to
# the `ray start --block` process this script becomes, so the kernel releases them when the
# container stops: nothing stale is left behind.
#
# Environment:
#   RAY_HEAD_ADDRESS          GCS address of the head (default ray-head:6379)
#   SEDSWEEP_GPUS_PER_WORKER  GPUs per worker node (default 1; 0 = CPU-only worker)
#   SEDSWEEP_GPU_LOCK_DIR     lock directory shared by the workers (default /var/lock/sedsweep-gpus)
#   SEDSWEEP_GPU_COUNT        GPUs on this host (default: counted with nvidia-smi -L)
# Extra arguments go to `ray start` (e.g. --num-cpus=8 --object-store-memory=...).
set -euo pipefail

want=${SEDSWEEP_GPUS_PER_WORKER:-1}
lock_dir=${SEDSWEEP_GPU_LOCK_DIR:-/var/lock/sedsweep-gpus}
head_address=${RAY_HEAD_ADDRESS:-ray-head:6379}

if [[ ! $want =~ ^[0-9]+$ ]]; then
    echo "sedsweep-ray-worker: SEDSWEEP_GPUS_PER_WORKER must be a whole number, not '$want'" >&2
    exit 2
fi

gpu_count() {
    if [[ -n ${SEDSWEEP_GPU_COUNT:-} ]]; then
        echo "$SEDSWEEP_GPU_COUNT"
    elif command -v nvidia-smi >/dev/null 2>&1; then
        nvidia-smi -L | grep -c '^GPU ' || true
    else
        echo 0
    fi
}

claimed=()
if ((want > 0)); then
    total=$(gpu_count)
    mkdir -p "$lock_dir"
    for ((i = 0; i < total && ${#claimed[@]} < want; i++)); do
        exec {fd}>"$lock_dir/gpu$i.lock"
        if flock --nonblock "$fd"; then
            claimed+=("$i")
        else
            exec {fd}>&-
        fi
    done
    if ((${#claimed[@]} < want)); then
        echo "sedsweep-ray-worker: needs $want free GPU(s) but found ${#claimed[@]} of $total" \
            "on this host; run at most $((total / want)) ray-worker replica(s) here" >&2
        exit 3
    fi
    CUDA_VISIBLE_DEVICES=$(IFS=,; echo "${claimed[*]}")
    export CUDA_VISIBLE_DEVICES
    echo "sedsweep-ray-worker: using GPU(s) $CUDA_VISIBLE_DEVICES of $total"
fi

exec ray start --address="$head_address" --num-gpus="$want" --block "$@"
