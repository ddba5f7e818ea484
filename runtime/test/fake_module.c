/*===- fake_module.c - a hand-written module for the runtime tests -------===*
 *
 * Follows docs/Runtime.md the way moe-compile output does (manifest + entry
 * points taking memref descriptors, calls into moe_rt_parallel_for), so the
 * runtime and moe-run can be tested without the compiler.
 *
 * Built several times: without FAKE_VARIANT it is the good module
 * (libmoe_fake_module.so); each FAKE_VARIANT breaks one part of the
 * contract for the error-path tests.
 *
 *===----------------------------------------------------------------------===*/

#include <math.h>
#include <stdint.h>
#include <string.h>

/* Declared by hand rather than via moe/runtime.h: a compiled module only
 * knows the two module-facing symbols. */
void moe_rt_parallel_for(int64_t n,
                         void (*body)(void *ctx, int64_t begin, int64_t end),
                         void *ctx);
int64_t moe_rt_num_threads(void);

#define EXPORT __attribute__((visibility("default")))

#define FAKE_GOOD 0
#define FAKE_NO_MANIFEST 1
#define FAKE_BAD_JSON 2
#define FAKE_NO_ENTRY 3
#define FAKE_BAD_FORMAT 4
#define FAKE_CUDA 5
#define FAKE_NULL_MANIFEST 6
#define FAKE_UNBOUND_SYMBOL 7
#ifndef FAKE_VARIANT
#define FAKE_VARIANT FAKE_GOOD
#endif

#if FAKE_VARIANT == FAKE_BAD_FORMAT
#define FORMAT "moe-module-2"
#else
#define FORMAT "moe-module-1"
#endif
#if FAKE_VARIANT == FAKE_CUDA
#define TARGET "cuda"
#else
#define TARGET "cpu"
#endif
#if FAKE_VARIANT == FAKE_NO_ENTRY
#define ADD_ENTRY "fake_add_missing"
#else
#define ADD_ENTRY "fake_add"
#endif
#if FAKE_VARIANT == FAKE_UNBOUND_SYMBOL
#define ADD_OUT_SHAPE "[\"B\", \"D\"]"
#else
#define ADD_OUT_SHAPE "[\"B\", \"C\"]"
#endif

#define LAYER_WEIGHTS                                                          \
  "{\"name\": \"fc1\", \"dtype\": \"f32\", \"shape\": [2, 3, 4]},"             \
  "{\"name\": \"fc2\", \"dtype\": \"f32\", \"shape\": [2, 4, 3]}"
#define LAYER_REFERENCE                                                        \
  "\"reference\": {\"op\": \"layer\","                                         \
  " \"operands\": {\"input\": 0, \"logits\": 1, \"fc1\": 2, \"fc2\": 3},"      \
  " \"attributes\": {\"k\": 1, \"scoring\": \"softmax\","                      \
  " \"normalize\": false, \"num_groups\": 1, \"top_groups\": 1,"               \
  " \"group_scoring\": \"max\", \"top_p\": null, \"scaling\": 1.0,"            \
  " \"activation\": \"relu\", \"swiglu_fusion\": \"interleaved\","             \
  " \"alpha\": 1.0, \"beta\": 0.0, \"limit\": null,"                           \
  " \"capacity_factor\": null, \"zero_experts\": []}}"

/* Unused by the variants without a manifest. */
__attribute__((unused)) static const char kManifest[] =
#if FAKE_VARIANT == FAKE_BAD_JSON
    "{\"format\": \"moe-module-1\", \"target\": \"cpu\",\n"
    " \"functions\": [{\"name\": \"add\",, }]}";
#else
    "{\"format\": \"" FORMAT "\", \"target\": \"" TARGET "\",\n"
    " \"functions\": [\n"
    /* y = a + b */
    "  {\"name\": \"add\", \"entry\": \"" ADD_ENTRY "\",\n"
    "   \"inputs\": [{\"name\": \"a\", \"dtype\": \"f32\", \"shape\": [\"B\", \"C\"]},\n"
    "              {\"name\": \"b\", \"dtype\": \"f32\", \"shape\": [\"B\", \"C\"]}],\n"
    "   \"outputs\": [{\"name\": \"y\", \"dtype\": \"f32\", \"shape\": " ADD_OUT_SHAPE "}]},\n"
    /* y[r, :] = x[r, :] * s[r], rows in parallel */
    "  {\"name\": \"scale_rows\", \"entry\": \"fake_scale_rows\",\n"
    "   \"inputs\": [{\"name\": \"x\", \"dtype\": \"f32\", \"shape\": [\"R\", \"C\"]},\n"
    "              {\"name\": \"s\", \"dtype\": \"f32\", \"shape\": [\"R\"]}],\n"
    "   \"outputs\": [{\"name\": \"y\", \"dtype\": \"f32\", \"shape\": [\"R\", \"C\"]}]},\n"
    /* y[b*S + s, :] = x[b, s, :] + offset */
    "  {\"name\": \"flatten\", \"entry\": \"fake_flatten\",\n"
    "   \"inputs\": [{\"name\": \"x\", \"dtype\": \"f32\", \"shape\": [\"B\", \"S\", 4]},\n"
    "              {\"name\": \"offset\", \"dtype\": \"i32\", \"shape\": [4]}],\n"
    "   \"outputs\": [{\"name\": \"y\", \"dtype\": \"f32\", \"shape\": [\"B*S\", 4]}]},\n"
    /* y = f32(x) for bf16 x */
    "  {\"name\": \"widen\", \"entry\": \"fake_widen\",\n"
    "   \"inputs\": [{\"name\": \"x\", \"dtype\": \"bf16\", \"shape\": [\"N\"]}],\n"
    "   \"outputs\": [{\"name\": \"y\", \"dtype\": \"f32\", \"shape\": [\"N\"]},\n"
    "                {\"name\": \"bits\", \"dtype\": \"bf16\", \"shape\": [\"N\"]}]},\n"
    /* a tiny moe.layer: E = 2, H = 4, I = 3, k = 1, softmax, relu */
    "  {\"name\": \"layer\", \"entry\": \"fake_layer\",\n"
    "   \"inputs\": [{\"name\": \"x\", \"dtype\": \"f32\", \"shape\": [\"T\", 4]},\n"
    "              {\"name\": \"router_logits\", \"dtype\": \"f32\", \"shape\": [\"T\", 2]},\n"
    "              " LAYER_WEIGHTS "],\n"
    "   \"outputs\": [{\"name\": \"result0\", \"dtype\": \"f32\", \"shape\": [\"T\", 4]}],\n"
    "   " LAYER_REFERENCE "},\n"
    /* the same layer on [B, S, H] activations */
    "  {\"name\": \"layer3d\", \"entry\": \"fake_layer\",\n"
    "   \"inputs\": [{\"name\": \"x\", \"dtype\": \"f32\", \"shape\": [\"B\", \"S\", 4]},\n"
    "              {\"name\": \"router_logits\", \"dtype\": \"f32\", \"shape\": [\"B*S\", 2]},\n"
    "              " LAYER_WEIGHTS "],\n"
    "   \"outputs\": [{\"name\": \"result0\", \"dtype\": \"f32\", \"shape\": [\"B\", \"S\", 4]}],\n"
    "   " LAYER_REFERENCE "},\n"
    /* the layer with a bug, so that --check has something to catch */
    "  {\"name\": \"layer_wrong\", \"entry\": \"fake_layer_wrong\",\n"
    "   \"inputs\": [{\"name\": \"x\", \"dtype\": \"f32\", \"shape\": [\"T\", 4]},\n"
    "              {\"name\": \"router_logits\", \"dtype\": \"f32\", \"shape\": [\"T\", 2]},\n"
    "              " LAYER_WEIGHTS "],\n"
    "   \"outputs\": [{\"name\": \"result0\", \"dtype\": \"f32\", \"shape\": [\"T\", 4]}],\n"
    "   " LAYER_REFERENCE "},\n"
    /* an entry that reports failure */
    "  {\"name\": \"fail\", \"entry\": \"fake_fail\",\n"
    "   \"inputs\": [{\"name\": \"x\", \"dtype\": \"f32\", \"shape\": [1]}],\n"
    "   \"outputs\": [{\"name\": \"y\", \"dtype\": \"f32\", \"shape\": [1]}]}\n"
    " ]}";
#endif

#if FAKE_VARIANT != FAKE_NO_MANIFEST
EXPORT const char *moe_module_manifest(void) {
#if FAKE_VARIANT == FAKE_NULL_MANIFEST
  return 0;
#else
  return kManifest;
#endif
}
#endif

/*===---------------------- descriptor access ----------------------------===*/

/* A descriptor is {allocated, aligned, offset, sizes[R], strides[R]}. */
static void *data_of(void *desc, size_t elem) {
  char *aligned;
  int64_t offset;
  memcpy(&aligned, (char *)desc + 8, sizeof aligned);
  memcpy(&offset, (char *)desc + 16, sizeof offset);
  return aligned + offset * (int64_t)elem;
}
static int64_t size_of(void *desc, int dim) { return ((int64_t *)desc)[3 + dim]; }

/*===--------------------------- entries ---------------------------------===*/

EXPORT int32_t fake_add(void **args) {
  const float *a = data_of(args[0], 4), *b = data_of(args[1], 4);
  float *y = data_of(args[2], 4);
  int64_t n = size_of(args[0], 0) * size_of(args[0], 1);
  for (int64_t i = 0; i < n; ++i)
    y[i] = a[i] + b[i];
  return 0;
}

struct scale_ctx {
  const float *x, *s;
  float *y;
  int64_t cols;
};

static void scale_body(void *p, int64_t begin, int64_t end) {
  struct scale_ctx *c = p;
  for (int64_t r = begin; r < end; ++r)
    for (int64_t j = 0; j < c->cols; ++j)
      c->y[r * c->cols + j] = c->x[r * c->cols + j] * c->s[r];
}

EXPORT int32_t fake_scale_rows(void **args) {
  struct scale_ctx c = {data_of(args[0], 4), data_of(args[1], 4),
                        data_of(args[2], 4), size_of(args[0], 1)};
  moe_rt_parallel_for(size_of(args[0], 0), scale_body, &c);
  return 0;
}

EXPORT int32_t fake_flatten(void **args) {
  const float *x = data_of(args[0], 4);
  const int32_t *offset = data_of(args[1], 4);
  float *y = data_of(args[2], 4);
  int64_t rows = size_of(args[0], 0) * size_of(args[0], 1);
  for (int64_t r = 0; r < rows; ++r)
    for (int j = 0; j < 4; ++j)
      y[r * 4 + j] = x[r * 4 + j] + (float)offset[j];
  return 0;
}

EXPORT int32_t fake_widen(void **args) {
  const uint16_t *x = data_of(args[0], 2);
  float *y = data_of(args[1], 4);
  uint16_t *bits = data_of(args[2], 2);
  int64_t n = size_of(args[0], 0);
  for (int64_t i = 0; i < n; ++i) {
    uint32_t w = (uint32_t)x[i] << 16;
    memcpy(&y[i], &w, 4);
    bits[i] = x[i];
  }
  return 0;
}

struct layer_ctx {
  const float *x, *logits, *fc1, *fc2;
  float *y;
  float scale;
};

static void layer_body(void *p, int64_t begin, int64_t end) {
  const struct layer_ctx *c = p;
  for (int64_t t = begin; t < end; ++t) {
    const float *l = c->logits + t * 2, *x = c->x + t * 4;
    int e = l[1] > l[0] ? 1 : 0; /* ties go to the lower index */
    double m = l[e];
    double w = 1.0 / (exp(l[0] - m) + exp(l[1] - m)); /* softmax of l[e] */
    float h[3];
    for (int i = 0; i < 3; ++i) {
      float a = 0;
      for (int k = 0; k < 4; ++k)
        a += c->fc1[(e * 3 + i) * 4 + k] * x[k];
      h[i] = a > 0 ? a : 0;
    }
    for (int o = 0; o < 4; ++o) {
      float a = 0;
      for (int i = 0; i < 3; ++i)
        a += c->fc2[(e * 4 + o) * 3 + i] * h[i];
      c->y[t * 4 + o] = (float)(w * a) * c->scale;
    }
  }
}

static int32_t layer(void **args, float scale) {
  /* x is [T, 4] or [B, S, 4]: count tokens from the logits [T, 2]. */
  struct layer_ctx c = {data_of(args[0], 4), data_of(args[1], 4),
                        data_of(args[2], 4), data_of(args[3], 4),
                        data_of(args[4], 4), scale};
  moe_rt_parallel_for(size_of(args[1], 0), layer_body, &c);
  return 0;
}

EXPORT int32_t fake_layer(void **args) { return layer(args, 1.0f); }
EXPORT int32_t fake_layer_wrong(void **args) { return layer(args, 1.5f); }

EXPORT int32_t fake_fail(void **args) {
  (void)args;
  return 7;
}
