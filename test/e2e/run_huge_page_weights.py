#!/usr/bin/python3
"""End-to-end check of huge-page weight layout (`moe-compile
--huge-page-weights`, on by default).

A layer with its router and 24 MiB of constant weights (test/lib/bf16_layer.py,
f32) is compiled twice: by default the ELF segment holding the weights must
be aligned to 2 MiB (p_align, and file offset congruent to the address
modulo 2 MiB: what lets the kernel map the file's pages 2 MiB at a time once
the runtime advises huge pages), and with --huge-page-weights=false to the
4 KiB page. Both modules must compute the layer (float64 reference, 1e-5 of
max|ref|) when moe-run loads them, the huge-page advice included. A layer
of under 16 MiB of weights keeps 4 KiB alignment.

    run_huge_page_weights.py --bin DIR --work DIR
"""
import os
import struct
import sys

sys.dont_write_bytecode = True
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "test", "lib"))
import numpy as np  # noqa: E402
from bf16_layer import layer_mlir, reference  # noqa: E402
from e2e_tools import parse_args, run  # noqa: E402

HUGE = 2 << 20


def largest_load_segment(path):
    """(p_offset, p_vaddr, p_memsz, p_align) of the largest PT_LOAD."""
    with open(path, "rb") as f:
        header = f.read(64)
        if header[:4] != b"\x7fELF" or header[4] != 2:
            sys.exit(f"FAIL: {path} is not an ELF64 file")
        phoff, = struct.unpack_from("<Q", header, 32)
        phentsize, phnum = struct.unpack_from("<HH", header, 54)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    loads = []
    for i in range(phnum):
        p_type, _, offset, vaddr, _, _, memsz, align = struct.unpack_from(
            "<IIQQQQQQ", table, i * phentsize)
        if p_type == 1:
            loads.append((offset, vaddr, memsz, align))
    return max(loads, key=lambda s: s[2])


def main():
    work, compile_, moe_run = parse_args(__doc__, "huge-page-weights")
    rng = np.random.default_rng(3)
    x = rng.standard_normal((37, 256)).astype(np.float32)
    x_path = os.path.join(work, "x.npy")
    np.save(x_path, x)
    # (H, I, E): 24 MiB and 6 MiB of expert weights.
    for (H, I, E), big in (((256, 1024, 8), True), ((256, 256, 8), False)):
        weights = dict(router=rng.standard_normal((E, H)).astype(np.float32),
                       fc1=(rng.standard_normal((E, 2 * I, H)) / 16).astype(np.float32),
                       fc2=(rng.standard_normal((E, H, I)) / 32).astype(np.float32))
        mlir = os.path.join(work, f"layer{I}.mlir")
        with open(mlir, "w") as f:
            f.write(layer_mlir(H, I, E, 2, dtype="f32", constants=weights))
        want = reference(x, weights["router"], weights["fc1"], weights["fc2"], 2)
        for flags, huge in (([], big), (["--huge-page-weights=false"], False)):
            so = os.path.join(work, f"layer{I}{'' if not flags else '_4k'}.so")
            run([compile_, mlir, "-o", so] + flags)
            offset, vaddr, size, align = largest_load_segment(so)
            what = f"I = {I} ({size / 2**20:.0f} MiB segment) {' '.join(flags) or 'default'}"
            if huge and (align < HUGE or (offset - vaddr) % HUGE):
                sys.exit(f"FAIL: {what}: weights segment not laid out for 2 MiB "
                         f"pages (offset {offset:#x}, address {vaddr:#x}, "
                         f"align {align:#x})")
            if not huge and align >= HUGE:
                sys.exit(f"FAIL: {what}: weights segment aligned to {align:#x}")
            y_path = os.path.join(work, "y.npy")
            run([moe_run, so, f"--input=@{x_path}", f"--output=@{y_path}"])
            err = np.abs(np.load(y_path) - want).max() / np.abs(want).max()
            if err > 1e-5:
                sys.exit(f"FAIL: {what}: max|diff|/max|ref| {err:.2e}")
            print(f"ok: {what}: segment align {align:#x}, output {err:.1e} "
                  f"of max|ref| off the float64 reference")
    return 0


if __name__ == "__main__":
    sys.exit(main())
