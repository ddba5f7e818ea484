//===- moe-run.cpp - run a compiled moe module on .npy files --------------===//
//
// moe-run MODEL.so [--function=NAME] --input=@x.npy ... [--output=@y.npy ...]
//         [--check [--tolerance=X]] [--benchmark=N] [--threads=N]
//         [--print-signature] [--output-f32] [--comm-timeout=S]
//
// The tool is lib/Tooling (moe-mlir/Tooling/RunModule.h); this is its main.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Tooling/RunModule.h"

int main(int argc, char **argv) {
  return moe::tooling::runModuleMain(argc, argv);
}
