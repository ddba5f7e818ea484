"""compare.py REF OUT: exit 1 unless OUT has REF's shape and
max|OUT - REF| / max|REF| <= 1e-6; prints the relative difference."""
import sys

import numpy as np

ref, out = (np.load(p).astype(np.float64) for p in sys.argv[1:3])
if ref.shape != out.shape:
    sys.exit("shape %s != %s" % (out.shape, ref.shape))
rel = float(np.max(np.abs(out - ref)) / max(np.max(np.abs(ref)), 1e-30))
print("relative difference %.3g" % rel)
sys.exit(0 if rel <= 1e-6 else 1)
