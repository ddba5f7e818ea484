#!/usr/bin/python3
"""Feeds structurally damaged copies of an ONNX model to an importer.

Usage: graph_fuzz.py IMPORTER MODEL.onnx WORKDIR [COUNT]
Where fuzz.py damages bytes, this damages the graph and keeps the protobuf
valid, so that the importer's graph matchers (MoE raising) and op importers
see well-formed but wrong graphs: a node dropped, an input rewired to
another value or emptied, an op type swapped, an attribute dropped or
changed, an input list cut short (fixed seed, 1-3 edits per copy). The
importer must exit 0 or 1, never crash or hang; exits 1 on the first crash.
"""
import os
import random
import subprocess
import sys

import onnx


def mutate(model, rng):
    graph = model.graph
    nodes = graph.node
    values = [o for n in nodes for o in n.output] + [i.name for i in graph.input]
    values += [t.name for t in graph.initializer]
    for _ in range(rng.randint(1, 3)):
        if not nodes:
            break
        node = nodes[rng.randrange(len(nodes))]
        kind = rng.randrange(6)
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


def main():
    importer, model_path, work = sys.argv[1:4]
    count = int(sys.argv[4]) if len(sys.argv) > 4 else 100
    os.makedirs(work, exist_ok=True)
    rng = random.Random(4321)
    outcomes = {0: 0, 1: 0}
    for i in range(count):
        model = onnx.load(model_path)
        mutate(model, rng)
        path = os.path.join(work, "mutated%03d.onnx" % i)
        onnx.save(model, path)
        try:
            result = subprocess.run([importer, path, "-o", os.devnull],
                                    capture_output=True, timeout=120)
        except subprocess.TimeoutExpired:
            print("graph_fuzz: %s: importer hung" % path)
            sys.exit(1)
        code = result.returncode
        if code not in outcomes or (code == 1 and not result.stderr):
            print("graph_fuzz: %s: importer exited with %d\n%s"
                  % (path, code, result.stderr.decode(errors="replace")[-2000:]))
            sys.exit(1)
        outcomes[code] += 1
    print("graph_fuzz: %d mutated graphs: %d imported, %d rejected with an "
          "error, 0 crashes" % (count, outcomes[0], outcomes[1]))


if __name__ == "__main__":
    main()
