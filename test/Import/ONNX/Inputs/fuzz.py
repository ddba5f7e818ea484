#!/usr/bin/python3
"""Feeds damaged copies of an ONNX model to moe-import-onnx.

Usage: fuzz.py IMPORTER MODEL.onnx WORKDIR [COUNT]
(1 in MOE_FUZZ_SHARE of the COUNT copies is run, see graph_fuzz.py.)
Each copy is truncated, has bytes flipped or has a run of bytes replaced
(fixed seed). The importer must exit 0 or 1 with a message on stderr for
every copy, never die of a signal or hang. Prints a summary; exits 1 on the
first crash, naming the file that caused it.
"""
import os
import random
import subprocess
import sys

from graph_fuzz import fuzz_share


def main():
    importer, model, work = sys.argv[1:4]
    count = int(sys.argv[4]) if len(sys.argv) > 4 else 200
    # Further arguments go to the importer.
    extra = sys.argv[5:]
    os.makedirs(work, exist_ok=True)
    data = open(model, "rb").read()
    rng = random.Random(1234)
    outcomes = {0: 0, 1: 0}
    share = fuzz_share()
    for i in range(count):
        damaged = bytearray(data)
        kind = i % 3
        if kind == 0:
            damaged = damaged[:rng.randrange(len(damaged))]
        elif kind == 1:
            for _ in range(rng.randint(1, 8)):
                damaged[rng.randrange(len(damaged))] ^= 1 << rng.randrange(8)
        else:
            start = rng.randrange(len(damaged))
            for j in range(start, min(len(damaged), start + rng.randint(1, 16))):
                damaged[j] = rng.randrange(256)
        if i % share:
            continue
        path = os.path.join(work, "damaged%03d.onnx" % i)
        with open(path, "wb") as f:
            f.write(damaged)
        try:
            result = subprocess.run([importer, path, "-o", os.devnull] + extra,
                                    capture_output=True, timeout=60)
        except subprocess.TimeoutExpired:
            sys.exit("fuzz: %s: importer hung" % path)
        if result.returncode not in (0, 1):
            sys.exit("fuzz: %s: importer exited with %d\n%s" %
                     (path, result.returncode, result.stderr.decode()[-2000:]))
        if result.returncode == 1 and b"error" not in result.stderr:
            sys.exit("fuzz: %s: failed without an error message" % path)
        os.remove(path)
        outcomes[result.returncode] += 1
    print("fuzz: %d damaged models: %d imported, %d rejected with an error, "
          "0 crashes" % (sum(outcomes.values()), outcomes[0], outcomes[1]))


if __name__ == "__main__":
    main()
