#!/usr/bin/env python3
"""Compares the ops of two imported modules, ignoring SSA names, constant
contents and op order: `same_ops.py A.mlir B.mlir` prints `same ops (N)` and
exits 0 when both hold the same multiset of (op, attributes, types) lines,
else prints the difference and exits 1. Used to show that a raised export
and the fused node it stands for import to the same computation."""
import collections
import re
import sys


def ops(path):
    lines = []
    for line in open(path):
        line = line.strip()
        m = re.match(r"^(?:%[\w#:, %]+ = )?([a-z_]+\.[a-z_.]+)(.*)$", line)
        if not m or m.group(1) in ("func.func", "func.return"):
            continue
        # Names of values, constants' contents and function names vary.
        text = re.sub(r"%[\w#]+", "%v", m.group(1) + m.group(2))
        text = re.sub(r"dense(_resource)?<[^>]*>", "dense<...>", text)
        lines.append(text)
    return collections.Counter(lines)


a, b = ops(sys.argv[1]), ops(sys.argv[2])
if a == b:
    print("same ops (%d)" % sum(a.values()))
    sys.exit(0)
for line in sorted((a - b) + (b - a)):
    print(("only in A: " if (a - b)[line] else "only in B: ") + line)
sys.exit(1)
