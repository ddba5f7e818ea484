//===- WarpOps.cpp - mma.sync, shfl.sync and ldmatrix semantics -----------===//
//
// The warp-collective instructions, computed by the last lane to arrive
// (Executor.cpp synchronises the lanes). Fragment layouts and shuffle
// clamping follow the PTX ISA exactly ("Matrix Fragments for mma.m16n8k16
// with floating point type", "shfl.sync", "ldmatrix"), so that a kernel
// whose lane-to-element mapping is wrong computes wrong results here as it
// would on a GPU.
//
//===----------------------------------------------------------------------===//

#include "Executor.h"

#include <cstring>

using namespace moe::gpuexec;

namespace moe::gpuexec {

float halfToFloat(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000) << 16;
  uint32_t exponent = h >> 10 & 0x1f;
  uint32_t mantissa = h & 0x3ff;
  uint32_t bits;
  if (exponent == 0) {
    // Zero or subnormal: mantissa * 2^-24, exact in float.
    float v = float(mantissa) * 0x1p-24f;
    return sign ? -v : v;
  }
  if (exponent == 31)
    bits = sign | 0x7f800000u | mantissa << 13;
  else
    bits = sign | (exponent + 112) << 23 | mantissa << 13;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

uint16_t floatToHalf(float f) {
  uint32_t x;
  std::memcpy(&x, &f, sizeof x);
  auto sign = uint16_t(x >> 16 & 0x8000);
  uint32_t a = x & 0x7fffffffu;
  if (a >= 0x7f800000u) // infinity, or NaN kept quiet with its top payload
    return sign | 0x7c00 | (a > 0x7f800000u ? 0x200 | (a >> 13 & 0x3ff) : 0);
  // From 65520 (halfway between the largest half, 65504, and 2^16) up,
  // rounding to nearest even gives infinity.
  if (a >= 0x477ff000u)
    return sign | 0x7c00;
  if (a < 0x38800000u) {
    // Below the smallest normal half (2^-14): a subnormal in units of
    // 2^-24. Up to 2^-25 (a tie with zero, whose mantissa is even) it
    // rounds to zero.
    if (a <= 0x33000000u)
      return sign;
    uint32_t exponent = a >> 23;
    uint32_t mantissa = (a & 0x7fffff) | 0x800000;
    uint32_t shift = 126 - exponent; // 14..24
    uint32_t q = mantissa >> shift;
    uint32_t rest = mantissa & ((1u << shift) - 1);
    uint32_t half = 1u << (shift - 1);
    if (rest > half || (rest == half && (q & 1)))
      ++q; // may carry into the smallest normal, whose encoding follows
    return uint16_t(sign | q);
  }
  uint32_t h = (((a >> 23) - 112) << 10) | (a >> 13 & 0x3ff);
  uint32_t rest = a & 0x1fff;
  if (rest > 0x1000 || (rest == 0x1000 && (h & 1)))
    ++h; // a carry into the exponent is the correct result
  return uint16_t(sign | h);
}

float bf16ToFloat(uint16_t h) {
  uint32_t bits = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

} // namespace moe::gpuexec

namespace {

float unpack(uint32_t reg, unsigned half, bool bf16) {
  auto h = uint16_t(half ? reg >> 16 : reg & 0xffff);
  return bf16 ? bf16ToFloat(h) : halfToFloat(h);
}

// Keys of the collectives: what all lanes must agree on besides the site.
uint32_t mmaKey(uint32_t abType, uint32_t cType, uint32_t dType) {
  return abType | cType << 2 | dType << 4;
}

void completeMma(uint32_t site, uint32_t key, uint32_t mask,
                 LaneArgs *const lanes[kWarpSize]) {
  (void)site;
  (void)mask;
  bool bf16 = (key & 3) == 1;
  bool cHalf = (key >> 2 & 3) == 1, dHalf = (key >> 4 & 3) == 1;
  float a[16][16], b[16][8], c[16][8];
  for (uint32_t lane = 0; lane < kWarpSize; ++lane) {
    const LaneArgs &l = *lanes[lane];
    uint32_t group = lane >> 2, tig = lane & 3;
    // A: a_i is half i%2 of register i/2; rows group (+8 for i in
    // {2,3,6,7}), columns tig*2 + i%2 (+8 for i >= 4).
    for (uint32_t i = 0; i < 8; ++i) {
      uint32_t row = group + ((i >> 1) & 1) * 8;
      uint32_t col = tig * 2 + (i & 1) + (i >> 2) * 8;
      a[row][col] = unpack(l.a[i / 2], i & 1, bf16);
    }
    // B (k x n, "col" layout): b_i has k = tig*2 + i%2 (+8 for i >= 2),
    // n = group.
    for (uint32_t i = 0; i < 4; ++i) {
      uint32_t k = tig * 2 + (i & 1) + (i >> 1) * 8;
      b[k][group] = unpack(l.b[i / 2], i & 1, bf16);
    }
    // C: c_i has row group (+8 for i >= 2), column tig*2 + i%2.
    for (uint32_t i = 0; i < 4; ++i) {
      uint32_t row = group + (i >> 1) * 8, col = tig * 2 + (i & 1);
      if (cHalf) {
        c[row][col] = unpack(l.c[i / 2], i & 1, false);
      } else {
        float v;
        std::memcpy(&v, &l.c[i], sizeof v);
        c[row][col] = v;
      }
    }
  }
  // Products of 16-bit floats are exact in float; accumulate over k in
  // order, starting from C.
  float d[16][8];
  for (uint32_t m = 0; m < 16; ++m)
    for (uint32_t n = 0; n < 8; ++n) {
      float acc = c[m][n];
      for (uint32_t k = 0; k < 16; ++k)
        acc += a[m][k] * b[k][n];
      d[m][n] = acc;
    }
  // Only now write D: a lane's d may alias its (or, in a broken kernel,
  // another lane's) inputs.
  for (uint32_t lane = 0; lane < kWarpSize; ++lane) {
    uint32_t group = lane >> 2, tig = lane & 3;
    uint32_t out[4] = {0, 0, 0, 0};
    for (uint32_t i = 0; i < 4; ++i) {
      float v = d[group + (i >> 1) * 8][tig * 2 + (i & 1)];
      if (dHalf)
        out[i / 2] |= uint32_t(floatToHalf(v)) << (16 * (i & 1));
      else
        std::memcpy(&out[i], &v, sizeof v);
    }
    std::memcpy(lanes[lane]->d, out, (dHalf ? 2 : 4) * sizeof(uint32_t));
  }
}

void completeShfl(uint32_t site, uint32_t key, uint32_t mask,
                  LaneArgs *const lanes[kWarpSize]) {
  (void)key;
  static const char *const modes[] = {"up", "down", "bfly", "idx"};
  for (uint32_t lane = 0; lane < kWarpSize; ++lane) {
    if (!(mask >> lane & 1))
      continue;
    LaneArgs &l = *lanes[lane];
    // The PTX ISA's pseudo-code for shfl.sync.
    int b = int(l.shflB & 0x1f);
    int c = int(l.shflC & 0x1f);
    int segmask = int(l.shflC >> 8 & 0x1f);
    int self = int(lane);
    int maxLane = (self & segmask) | (c & ~segmask);
    int minLane = self & segmask;
    int j = self;
    bool p = false;
    switch (l.mode) {
    case 0:
      j = self - b;
      p = j >= maxLane;
      break;
    case 1:
      j = self + b;
      p = j <= maxLane;
      break;
    case 2:
      j = self ^ b;
      p = j <= maxLane;
      break;
    default:
      j = minLane | (b & ~segmask);
      p = j <= maxLane;
      break;
    }
    if (!p)
      j = self;
    if (!(mask >> j & 1))
      fail("shfl.sync.%s at site %u: lane %u reads lane %d, which is not in "
           "the member mask 0x%08x (undefined on a GPU)",
           modes[l.mode & 3], site, lane, j, mask);
    l.result = lanes[j]->value;
    l.valid = p;
  }
}

void completeLdmatrix(uint32_t site, uint32_t key, uint32_t mask,
                      LaneArgs *const lanes[kWarpSize]) {
  (void)mask;
  uint32_t num = key & 7;
  bool trans = key & 8;
  // Rows: matrix i's row r comes from lane 8*i + r.
  for (uint32_t lane = 0; lane < 8 * num; ++lane) {
    const void *row = lanes[lane]->row;
    if (reinterpret_cast<uintptr_t>(row) % 16)
      fail("ldmatrix at site %u: lane %u's row address %p is not 16-byte "
           "aligned",
           site, lane, row);
    if (!inSharedMemory(row, 16))
      fail("ldmatrix at site %u: lane %u's row address %p is not in the "
           "block's shared memory",
           site, lane, row);
  }
  auto element = [&](uint32_t matrix, uint32_t row, uint32_t col) {
    uint16_t v;
    std::memcpy(
        &v, static_cast<const char *>(lanes[8 * matrix + row]->row) + 2 * col,
        sizeof v);
    return uint32_t(v);
  };
  uint32_t result[kWarpSize][4];
  for (uint32_t lane = 0; lane < kWarpSize; ++lane)
    for (uint32_t i = 0; i < num; ++i) {
      uint32_t r = lane / 4, c = 2 * (lane % 4);
      result[lane][i] = trans ? element(i, c, r) | element(i, c + 1, r) << 16
                              : element(i, r, c) | element(i, r, c + 1) << 16;
    }
  for (uint32_t lane = 0; lane < kWarpSize; ++lane)
    std::memcpy(lanes[lane]->out, result[lane], num * sizeof(uint32_t));
}

} // namespace

MOE_GPUEXEC_EXPORT void
moe_gpuexec_mma_m16n8k16(uint32_t site, uint32_t abType, uint32_t cType,
                         uint32_t dType, const uint32_t *a, const uint32_t *b,
                         const uint32_t *c, uint32_t *d) {
  requireLaunch("moe_gpuexec_mma_m16n8k16");
  if (launchSm() < 80)
    fail("mma.sync.m16n8k16 at site %u needs sm_80 or later "
         "(MOE_GPUEXEC_SM=%d)",
         site, launchSm());
  if (abType > 1 || cType > 1 || dType > 1)
    fail("mma.sync.m16n8k16 at site %u: unsupported types (A/B %u, C %u, "
         "D %u; 0 = f16/f32, 1 = bf16/f16)",
         site, abType, cType, dType);
  if (abType == 1 && (cType != 0 || dType != 0))
    fail("mma.sync.m16n8k16 at site %u: bf16 inputs need f32 C and D", site);
  LaneArgs args;
  args.a = a;
  args.b = b;
  args.c = c;
  args.d = d;
  warpCollective(WarpOp::Mma, site, ~0u, mmaKey(abType, cType, dType), args,
                 completeMma);
}

MOE_GPUEXEC_EXPORT uint32_t moe_gpuexec_shfl_sync(uint32_t site, uint32_t mode,
                                                  uint32_t memberMask,
                                                  uint32_t value, uint32_t b,
                                                  uint32_t c, uint32_t *valid) {
  requireLaunch("moe_gpuexec_shfl_sync");
  if (mode > 3)
    fail("shfl.sync at site %u: unknown mode %u (0 up, 1 down, 2 bfly, "
         "3 idx)",
         site, mode);
  LaneArgs args;
  args.mode = mode;
  args.value = value;
  args.shflB = b;
  args.shflC = c;
  const LaneArgs &r =
      warpCollective(WarpOp::Shfl, site, memberMask, 0, args, completeShfl);
  if (valid)
    *valid = r.valid;
  return r.result;
}

MOE_GPUEXEC_EXPORT void moe_gpuexec_ldmatrix(uint32_t site,
                                             const void *rowAddress,
                                             uint32_t num, uint32_t trans,
                                             uint32_t *out) {
  requireLaunch("moe_gpuexec_ldmatrix");
  if (launchSm() < 75)
    fail("ldmatrix at site %u needs sm_75 or later (MOE_GPUEXEC_SM=%d)", site,
         launchSm());
  if (num != 1 && num != 2 && num != 4)
    fail("ldmatrix at site %u: .x%u (must be .x1, .x2 or .x4)", site, num);
  if (trans > 1)
    fail("ldmatrix at site %u: trans %u (must be 0 or 1)", site, trans);
  LaneArgs args;
  args.row = rowAddress;
  args.out = out;
  warpCollective(WarpOp::Ldmatrix, site, ~0u, num | trans << 3, args,
                 completeLdmatrix);
}
