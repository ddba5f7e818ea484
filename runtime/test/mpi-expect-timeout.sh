#!/usr/bin/env bash
# ctest driver of `moe-mpi-tests timeout`: the job must fail (non-zero
# exit), print the timeout message and end within LIMIT seconds, rather
# than hang. Usage: mpi-expect-timeout.sh LIMIT MPIRUN-COMMAND...
set -u
limit=$1
shift
start=$(date +%s)
out=$(MOE_COMM_TIMEOUT=2 "$@" 2>&1)
rc=$?
elapsed=$(($(date +%s) - start))
echo "$out"
echo "exit status $rc after ${elapsed}s"
if [[ $rc -eq 0 ]]; then
  echo "FAIL: the job succeeded although a rank skipped the collective"
  exit 1
fi
if ! grep -q "moe-mpi-tests: rank 0: all-to-all-v did not complete within 2 s (a peer rank failed or is stuck)" <<<"$out"; then
  echo "FAIL: no timeout message from rank 0"
  exit 1
fi
if ((elapsed > limit)); then
  echo "FAIL: took ${elapsed}s, more than ${limit}s"
  exit 1
fi
echo "PASS"
