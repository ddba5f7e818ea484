#!/usr/bin/python3
"""Feeds structurally damaged copies of an ONNX model to an importer.

Usage: graph_fuzz.py IMPORTER MODEL.onnx WORKDIR [COUNT] [--focus TEXT]
                     [--compile MOE_COMPILE] [--compile-every N] [--seed S]
                     [--jobs J] [--timeout SECONDS] [--compile-timeout SECONDS]
Where fuzz.py damages bytes, this damages the graph and keeps the protobuf
valid, so that the importer's graph matchers (MoE raising) and op importers
see well-formed but wrong graphs: a node dropped, an input rewired to
another value or emptied, an op type swapped, an attribute dropped or
changed, an input list cut short, a constant's value changed (fixed seed,
1-3 edits per copy). `--focus TEXT` draws half of the edited nodes from
those whose name holds TEXT (`/mlp/`: the MoE blocks of a whole decoder,
which would otherwise get few of the edits). `--compile` also runs the
whole `moe-compile` on every Nth copy that imported (N = --compile-every).

The importer (and moe-compile) must exit 0, or 1 with an error message:
a signal, another exit code, a sanitizer report, an LLVM fatal error or
running past the timeout is a crash. Prints each crash (the copy is kept)
and a summary; exits 1 when anything crashed. Only 1 in MOE_FUZZ_SHARE
(default 1) of the COUNT copies is run.
"""
import argparse
import concurrent.futures
import os
import random
import subprocess
import sys

import numpy as np
import onnx
from onnx import numpy_helper

# What only a crash writes: sanitizer reports, UBSan's "runtime error",
# report_fatal_error and LLVM's crash handler.
CRASH_MARKERS = (b"Sanitizer", b": runtime error: ", b"LLVM ERROR:",
                 b"Stack dump:")
ODD_INTS = [-3, -2, -1, 0, 1, 2, 3, 1 << 40, -(1 << 40)]
ODD_FLOATS = [0.0, -1.0, float("nan"), float("inf"), -1e30]


def odd_value(dtype, rng):
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return int(np.clip(rng.choice(ODD_INTS), info.min, info.max))
    if np.issubdtype(dtype, np.floating):
        return rng.choice(ODD_FLOATS)
    return None


def mutate_constant(node, rng):
    """Changes one element of a Constant's value, or its shape."""
    attr = node.attribute[0]
    value = numpy_helper.to_array(attr.t).copy()
    odd = odd_value(value.dtype, rng)
    if odd is None:
        return
    if value.size and rng.random() < 0.7:
        value.flat[rng.randrange(value.size)] = odd
    else:
        value = np.array([odd] * rng.randrange(3), dtype=value.dtype)
    attr.t.CopyFrom(numpy_helper.from_array(value, attr.t.name))


def mutate(model, rng, focus=None):
    graph = model.graph
    nodes = graph.node
    values = [o for n in nodes for o in n.output] + [i.name for i in graph.input]
    values += [t.name for t in graph.initializer]
    for _ in range(rng.randint(1, 3)):
        if not nodes:
            break
        pool = [n for n in nodes if focus and focus in n.name]
        if not pool or rng.random() >= 0.5:
            pool = nodes
        node = pool[rng.randrange(len(pool))]
        kind = rng.randrange(7)
        if kind == 0:
            nodes.remove(node)
        elif kind == 1 and node.input:
            node.input[rng.randrange(len(node.input))] = rng.choice(values)
        elif kind == 2 and node.input:
            node.input[rng.randrange(len(node.input))] = ""
        elif kind == 3:
            other = nodes[rng.randrange(len(nodes))]
            node.op_type = other.op_type
        elif kind == 4 and node.attribute:
            attr = node.attribute[rng.randrange(len(node.attribute))]
            if rng.random() < 0.5:
                node.attribute.remove(attr)
            elif attr.type == onnx.AttributeProto.INT:
                attr.i = rng.choice([-2, -1, 0, 1, 2, 3, 1 << 40])
            elif attr.type == onnx.AttributeProto.INTS and attr.ints:
                attr.ints[rng.randrange(len(attr.ints))] = rng.choice([-3, 0, 5])
            elif attr.type == onnx.AttributeProto.FLOAT:
                attr.f = rng.choice([0.0, -1.0, float("nan")])
        elif kind == 5 and node.input:
            del node.input[rng.randrange(len(node.input)):]
        elif kind == 6:
            constants = [n for n in pool if n.op_type == "Constant"
                         and len(n.attribute) == 1 and n.attribute[0].name == "value"]
            if constants:
                mutate_constant(rng.choice(constants), rng)


def run(command, timeout):
    """(crashed, what happened) for one run of a tool."""
    try:
        result = subprocess.run(command, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return True, "ran past the %d s timeout" % timeout
    code, err = result.returncode, result.stderr
    if (code not in (0, 1) or (code == 1 and b"error" not in err)
            or any(m in err for m in CRASH_MARKERS)):
        return True, "exited with %d\n%s" % (code, err.decode(errors="replace")[-3000:])
    return False, code


def fuzz(importer, model_path, work, count, seed=4321, focus=None,
         compile_tool=None, compile_every=10, jobs=1, timeout=120,
         compile_timeout=600, share=1):
    """Imports every `share`th of `count` mutated copies of the model (all
    are drawn, so that copy i is the same at any share), then compiles every
    `compile_every`th of those that imported (in index order, so that the
    sample does not depend on `jobs`). Returns {imported, rejected,
    compiled, built, mutated, crashes: [message]}: mutated counts the copies
    tried, compiled the compiles run, built those that wrote a module (the
    others were rejected with an error or crashed)."""
    os.makedirs(work, exist_ok=True)
    original = onnx.load(model_path)
    rng = random.Random(seed)
    paths = []
    for i in range(count):
        model = onnx.ModelProto()
        model.CopyFrom(original)
        mutate(model, rng, focus)
        if i % share:
            continue
        paths.append(os.path.join(work, "mutated%03d.onnx" % i))
        onnx.save(model, paths[-1])

    def tool(tool_path, path, *args, timeout=timeout):
        crashed, what = run([tool_path, path] + list(args), timeout)
        return (("%s: %s %s" % (path, os.path.basename(tool_path), what))
                if crashed else None), what

    counts = {"imported": 0, "rejected": 0, "compiled": 0, "built": 0,
              "crashes": []}
    crashed = set()
    with concurrent.futures.ThreadPoolExecutor(max(1, jobs)) as pool:
        imports = list(pool.map(lambda p: tool(importer, p, "-o", os.devnull), paths))
        imported = []
        for path, (crash, code) in zip(paths, imports):
            if crash:
                counts["crashes"].append(crash)
                crashed.add(path)
            else:
                counts["imported" if code == 0 else "rejected"] += 1
                if code == 0:
                    imported.append(path)
        sample = imported[::compile_every] if compile_tool else []
        compiles = pool.map(
            lambda p: tool(compile_tool, p, "-o", p[:-len(".onnx")] + ".so",
                           timeout=compile_timeout), sample)
        for path, (crash, code) in zip(sample, compiles):
            counts["compiled"] += 1
            if not crash and code == 0:
                counts["built"] += 1
            so = path[:-len(".onnx")] + ".so"
            if os.path.exists(so):
                os.remove(so)
            if crash:
                counts["crashes"].append(crash)
                crashed.add(path)
    # Whole models are megabytes each: keep only those that crashed.
    for path in paths:
        if path not in crashed:
            os.remove(path)
    counts["mutated"] = len(paths)
    return counts


def fuzz_share():
    """1 in MOE_FUZZ_SHARE of the damaged copies is run (the others are
    still drawn, so that each copy is the same at any share): lit sets 1
    under the sanitizers, 3 in a plain build (test/lit.cfg.py)."""
    share = int(os.environ.get("MOE_FUZZ_SHARE", "1"))
    if share < 1:
        sys.exit("MOE_FUZZ_SHARE must be at least 1, got %d" % share)
    return share


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("importer")
    parser.add_argument("model")
    parser.add_argument("work")
    parser.add_argument("count", type=int, nargs="?", default=100)
    parser.add_argument("--focus")
    parser.add_argument("--compile", dest="compile_tool")
    parser.add_argument("--compile-every", type=int, default=10)
    parser.add_argument("--seed", type=int, default=4321)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--timeout", type=int, default=120)
    # A whole decoder whose MoE blocks are not raised takes LLVM minutes.
    parser.add_argument("--compile-timeout", type=int, default=600)
    args = parser.parse_args()
    counts = fuzz(args.importer, args.model, args.work, args.count, args.seed,
                  args.focus, args.compile_tool, args.compile_every, args.jobs,
                  args.timeout, args.compile_timeout, fuzz_share())
    for crash in counts["crashes"]:
        print("graph_fuzz: %s" % crash)
    compiled = (", %d of them compiled (%d built a module)"
                % (counts["compiled"], counts["built"]) if args.compile_tool else "")
    print("graph_fuzz: %d mutated graphs: %d imported%s, %d rejected with an "
          "error, %d crashes" % (counts["mutated"], counts["imported"], compiled,
                                 counts["rejected"], len(counts["crashes"])))
    sys.exit(1 if counts["crashes"] else 0)


if __name__ == "__main__":
    main()
