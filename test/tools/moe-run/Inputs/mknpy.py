"""Writes and dumps small .npy files for the moe-run lit tests.

Standard library only: lit may run under a Python without numpy.

  mknpy.py OUT DESCR SHAPE VALUES [--truncate=N]
      DESCR   '<f4', '<f8', '<f2', '<u2' (bf16 bits), '<i4', '<i8'
      SHAPE   '2x3', '5', or 'scalar'
      VALUES  '1,2,3,...' (repeated cyclically to fill the shape),
              'range' (0, 1, 2, ...) or 'random:SEED' (uniform in [-1, 1))
      --truncate=N  keep only the first N bytes of the file
  mknpy.py --dump FILE
      prints "DESCR SHAPE" and the values, one per line
"""

import ast
import random
import struct
import sys

FORMATS = {"<f4": "f", "<f8": "d", "<f2": "e", "<i4": "i", "<i8": "q"}


def to_bf16_bits(x):
    (bits,) = struct.unpack("<I", struct.pack("<f", x))
    # Round to nearest even on the 16 dropped bits.
    bits += 0x7FFF + ((bits >> 16) & 1)
    return (bits >> 16) & 0xFFFF


def from_bf16_bits(b):
    return struct.unpack("<f", struct.pack("<I", b << 16))[0]


def header(descr, shape):
    text = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {tuple(shape)!r}, }}"
    # Pad with spaces so that the data starts 64-byte aligned, as numpy does.
    total = 10 + len(text) + 1
    text += " " * ((64 - total % 64) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text.encode()


def values(spec, n):
    if spec == "range":
        return [float(i) for i in range(n)]
    if spec.startswith("random:"):
        rng = random.Random(int(spec.split(":")[1]))
        return [rng.uniform(-1.0, 1.0) for _ in range(n)]
    items = [float(v) for v in spec.split(",")] if spec else [0.0]
    return [items[i % len(items)] for i in range(n)]


def write(out, descr, shape_spec, spec, truncate):
    shape = [] if shape_spec == "scalar" else [int(d) for d in shape_spec.split("x")]
    n = 1
    for d in shape:
        n *= d
    data = b""
    for v in values(spec, n):
        if descr == "<u2":
            data += struct.pack("<H", to_bf16_bits(v))
        elif descr in ("<i4", "<i8"):
            data += struct.pack("<" + FORMATS[descr], int(v))
        else:
            data += struct.pack("<" + FORMATS[descr], v)
    blob = header(descr, shape) + data
    if truncate is not None:
        blob = blob[:truncate]
    with open(out, "wb") as f:
        f.write(blob)


def dump(path):
    with open(path, "rb") as f:
        blob = f.read()
    (hlen,) = struct.unpack("<H", blob[8:10])
    meta = ast.literal_eval(blob[10 : 10 + hlen].decode())
    descr, shape = meta["descr"], meta["shape"]
    print(descr, "x".join(str(d) for d in shape) if shape else "scalar")
    data = blob[10 + hlen :]
    if descr == "<u2":
        vals = [from_bf16_bits(b) for (b,) in struct.iter_unpack("<H", data)]
    else:
        vals = [v for (v,) in struct.iter_unpack("<" + FORMATS[descr], data)]
    for v in vals:
        print(f"{v:.6g}")


def main(argv):
    if argv[0] == "--dump":
        dump(argv[1])
        return
    truncate = None
    rest = []
    for a in argv:
        if a.startswith("--truncate="):
            truncate = int(a.split("=")[1])
        else:
            rest.append(a)
    out, descr, shape = rest[0], rest[1], rest[2]
    write(out, descr, shape, rest[3] if len(rest) > 3 else "range", truncate)


if __name__ == "__main__":
    main(sys.argv[1:])
