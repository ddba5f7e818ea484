#!/usr/bin/env bash
# ctest driver for a job that must be aborted: it must fail (non-zero
# exit), print a line matching PATTERN (grep -E) and end within LIMIT
# seconds rather than hang. Usage: expect-abort.sh LIMIT PATTERN COMMAND...
set -u
limit=$1
pattern=$2
shift 2
start=$(date +%s)
out=$("$@" 2>&1)
rc=$?
elapsed=$(($(date +%s) - start))
echo "$out"
echo "exit status $rc after ${elapsed}s"
if [[ $rc -eq 0 ]]; then
  echo "FAIL: the job succeeded"
  exit 1
fi
if ! grep -Eq -- "$pattern" <<<"$out"; then
  echo "FAIL: no line matches: $pattern"
  exit 1
fi
if ((elapsed > limit)); then
  echo "FAIL: took ${elapsed}s, more than ${limit}s"
  exit 1
fi
echo "PASS"
