// RUN: not moe-opt %s --moe-prune-experts="profile=%S/Inputs/missing.json prune=1" 2>&1 | FileCheck %s --check-prefix=MISSING
// RUN: not moe-opt %s --moe-prune-experts="profile=%s prune=1" 2>&1 | FileCheck %s --check-prefix=NOTJSON
// RUN: not moe-opt %s --moe-prune-experts="profile=%S/Inputs/bad-profile.json prune=1" 2>&1 | FileCheck %s --check-prefix=NOTPROFILE

// A profile that cannot be read, parsed or is not one stops the pass.
// MISSING: error: routing profile '{{.*}}missing.json': No such file or directory
// NOTJSON: error: routing profile '{{.*}}': {{.*}}
// NOTPROFILE: error: routing profile '{{.*}}bad-profile.json': not a routing profile (no "format": "moe-routing-profile")
func.func @layer(%x: tensor<?x2xf32>) -> tensor<?x2xf32> {
  %r = arith.constant dense<1.0> : tensor<4x2xf32>
  %fc1 = arith.constant dense<1.0> : tensor<4x1x2xf32>
  %fc2 = arith.constant dense<1.0> : tensor<4x2x1xf32>
  %y = moe.layer %x router_weight %r fc1 %fc1 fc2 %fc2 {k = 1 : i64}
      : (tensor<?x2xf32>, tensor<4x2xf32>, tensor<4x1x2xf32>, tensor<4x2x1xf32>) -> tensor<?x2xf32>
  return %y : tensor<?x2xf32>
}
