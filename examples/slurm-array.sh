#!/usr/bin/env bash
# Segment a catalogue with a Slurm job array: each array task does one shard.
#
#   sbatch --array=0-31 examples/slurm-array.sh /data/catalogue /data/scenes /models/lgss.onnx
#
# Task I of N runs `lgss segment --shard I/N`: a movie belongs to the shard
# FNV-1a-64(file stem) mod N, so tasks never open each other's movies and a
# shard keeps its movies when files are added. --skip-done makes a rerun
# (`sbatch --array=7 …` after a node died) redo only what is unfinished, and
# redo everything that another model or other options made.
#
# Exit codes: 0 all done; 3 some movies are invalid (named in the log; the
# rest are done: retrying cannot help, so the task counts as done); anything
# else is a failure worth a retry (`--requeue`).
#SBATCH --job-name=lgss-segment
#SBATCH --cpus-per-task=4
#SBATCH --mem=8G
#SBATCH --time=04:00:00
#SBATCH --output=lgss-segment-%A_%a.log
set -uo pipefail

catalogue=${1:?usage: slurm-array.sh CATALOGUE_DIR OUT_DIR MODEL.onnx}
out=${2:?usage: slurm-array.sh CATALOGUE_DIR OUT_DIR MODEL.onnx}
model=${3:?usage: slurm-array.sh CATALOGUE_DIR OUT_DIR MODEL.onnx}
index=${SLURM_ARRAY_TASK_ID:?run this with sbatch --array=0-(N-1)}
count=${SLURM_ARRAY_TASK_COUNT:?run this with sbatch --array=0-(N-1)}

lgss segment "$catalogue" --shard "$index/$count" --skip-done \
  --runtime "${LGSS_RUNTIME:-ort-cpu}" --model "$model" --threads "${SLURM_CPUS_PER_TASK:-4}" \
  --out "$out"
rc=$?
if [ "$rc" -eq 3 ]; then
  echo "lgss-segment: shard $index/$count done, with invalid movies (see above)" >&2
  exit 0
fi
exit "$rc"
