/*===- moe/runtime.h - C API of the moe-mlir runtime ------------*- C -*-===*
 *
 * Loads modules compiled by moe-compile (shared objects following
 * docs/Runtime.md, ABI "moe-module-1"), describes their functions and runs
 * them on caller-owned memory.
 *
 * Plain C, no MLIR or LLVM headers. Conventions:
 *
 *  - Every fallible call returns a moe_status. On failure, moe_last_error()
 *    returns a message for the calling thread that says what was wrong
 *    (e.g. "input 1 'router_logits': dimension 0 is 7 but symbol T is 8
 *    (bound by input 0 'x')"). The message stays valid until the next
 *    failing runtime call on that thread.
 *  - Strings and arrays returned by the query functions are owned by the
 *    module and valid until moe_module_unload().
 *  - Tensors never own memory: a moe_tensor describes a dense row-major
 *    (C order) buffer that the caller allocated. Outputs are allocated by
 *    the caller too; moe_function_output_shapes() says how large.
 *  - A loaded module may be used from several threads at once; the worker
 *    pool is shared (a parallel loop started while another is running on the
 *    pool runs on the calling thread alone rather than waiting).
 *
 *===----------------------------------------------------------------------===*/

#ifndef MOE_RUNTIME_H
#define MOE_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#define MOE_API
#else
#define MOE_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

/*===-------------------------- Status codes -----------------------------===*/

typedef enum moe_status {
  MOE_OK = 0,
  MOE_INVALID_ARGUMENT = 1, /* bad call: wrong dtype/shape/count, null, ... */
  MOE_NOT_FOUND = 2,        /* no such file or function */
  MOE_IO_ERROR = 3,         /* a file exists but cannot be read */
  MOE_INVALID_MODULE = 4,   /* not a module, bad manifest, missing entry */
  MOE_UNAVAILABLE = 5,      /* the module's target cannot run here (CUDA) */
  MOE_INTERNAL = 6,         /* the module failed, out of memory, ... */
  MOE_DEVICE_ERROR = 7      /* the CUDA driver reported an error (the
                               message names the call and the error) */
} moe_status;

/* "OK", "INVALID_ARGUMENT", ..., "DEVICE_ERROR"; "UNKNOWN" for other
 * values. */
MOE_API const char *moe_status_name(moe_status status);

/* Message of the last failing call on this thread ("" if none). */
MOE_API const char *moe_last_error(void);

/*===----------------------------- Dtypes --------------------------------===*/

typedef enum moe_dtype {
  MOE_DTYPE_F32 = 0,
  MOE_DTYPE_F16 = 1,
  MOE_DTYPE_BF16 = 2,
  MOE_DTYPE_F64 = 3,
  MOE_DTYPE_I32 = 4,
  MOE_DTYPE_I64 = 5,
  MOE_DTYPE_I8 = 6,
  MOE_DTYPE_U8 = 7,
  MOE_DTYPE_BOOL = 8 /* one byte, 0 or 1 */
} moe_dtype;

/* Manifest spelling: "f32", "bf16", ...; NULL for an invalid value. */
MOE_API const char *moe_dtype_name(moe_dtype dtype);
/* Bytes per element; 0 for an invalid value. */
MOE_API size_t moe_dtype_size(moe_dtype dtype);
/* Parses a manifest spelling. */
MOE_API moe_status moe_dtype_parse(const char *name, moe_dtype *out);

/*===----------------------------- Tensors -------------------------------===*/

/* Largest rank a moe_tensor can describe. */
#define MOE_MAX_RANK 8

/* A dense row-major view of caller memory. `data` may be NULL only when the
 * tensor has no elements. */
typedef struct moe_tensor {
  moe_dtype dtype;
  int32_t rank;
  int64_t shape[MOE_MAX_RANK];
  void *data;
} moe_tensor;

/* Number of elements (1 for rank 0); -1 when the rank or a dimension is
 * invalid or the product overflows. */
MOE_API int64_t moe_tensor_numel(const moe_tensor *tensor);
/* numel * dtype size; -1 when invalid. */
MOE_API int64_t moe_tensor_byte_size(const moe_tensor *tensor);

/*===----------------------------- Modules -------------------------------===*/

typedef struct moe_module moe_module;
typedef struct moe_function moe_function;

/* Loads the compiled module at `path` (dlopen with RTLD_NOW | RTLD_LOCAL)
 * and validates its manifest. Fails with
 *   MOE_NOT_FOUND       the file does not exist,
 *   MOE_IO_ERROR        it cannot be read,
 *   MOE_INVALID_MODULE  it is not an ELF shared object, the dynamic loader
 *                       rejects it (truncated, wrong architecture, missing
 *                       dependency), it does not export moe_module_manifest,
 *                       the manifest is not valid JSON or breaks the contract
 *                       (format version, dtypes, shapes, symbols), or an
 *                       entry point of a CPU function is missing.
 * A "cuda" module loads without a CUDA driver (its functions can be
 * inspected); the driver is needed only once it runs. */
MOE_API moe_status moe_module_load(const char *path, moe_module **out);
/* Unloads a module; NULL is allowed. Invalidates its functions/strings. */
MOE_API void moe_module_unload(moe_module *module);

/* "cpu" or "cuda". */
MOE_API const char *moe_module_target(const moe_module *module);
/* The manifest text as the module returned it. */
MOE_API const char *moe_module_manifest_json(const moe_module *module);
/* The path the module was loaded from. */
MOE_API const char *moe_module_path(const moe_module *module);

MOE_API int64_t moe_module_function_count(const moe_module *module);
/* The function at `index` in manifest order; NULL when out of range. */
MOE_API const moe_function *moe_module_function(const moe_module *module,
                                                int64_t index);
/* Looks a function up by name; MOE_NOT_FOUND (the message lists the
 * available functions) when there is none. */
MOE_API moe_status moe_module_find_function(const moe_module *module,
                                            const char *name,
                                            const moe_function **out);

/*===---------------------------- Functions ------------------------------===*/

MOE_API const char *moe_function_name(const moe_function *function);
/* Entry symbol name from the manifest. */
MOE_API const char *moe_function_entry(const moe_function *function);
MOE_API int64_t moe_function_input_count(const moe_function *function);
MOE_API int64_t moe_function_output_count(const moe_function *function);

/* How an expert-parallel function's argument is split among the ranks
 * (docs/ExpertParallel.md, manifest field "split"). */
typedef enum moe_split {
  MOE_SPLIT_NONE = 0,   /* replicated: every rank passes the whole tensor */
  MOE_SPLIT_TOKENS = 1, /* dimension 0 split by the token rule */
  MOE_SPLIT_EXPERTS = 2 /* dimension 0 is Emax: the rank's experts, padded */
} moe_split;

/* Signature of one input or output as declared by the manifest. */
typedef struct moe_arg_info {
  const char *name;
  moe_dtype dtype;
  int32_t rank;
  /* `rank` entries: the static size, or -1 for a symbolic dimension. */
  const int64_t *shape;
  /* `rank` entries: the symbol expression ("T", "B*S") of a symbolic
   * dimension, NULL for a static one. */
  const char *const *dims;
  /* MOE_SPLIT_NONE unless the function is expert-parallel and the manifest
   * says "split". */
  moe_split split;
} moe_arg_info;

MOE_API moe_status moe_function_input(const moe_function *function,
                                      int64_t index, moe_arg_info *out);
MOE_API moe_status moe_function_output(const moe_function *function,
                                       int64_t index, moe_arg_info *out);

/* The function's `reference` section re-serialised as compact JSON, or NULL
 * when the manifest has none (moe-run --check uses it). */
MOE_API const char *moe_function_reference_json(const moe_function *function);

/* Checks the dtypes and shapes of `inputs` (their `data` is not read and may
 * be NULL) against the manifest, binds the shape symbols and writes the
 * dtype, rank and shape of every output into `outputs[0..num_outputs)`
 * (their `data` is left as it was). `num_inputs` and `num_outputs` must
 * equal the function's counts. */
MOE_API moe_status moe_function_output_shapes(const moe_function *function,
                                              const moe_tensor *inputs,
                                              int64_t num_inputs,
                                              moe_tensor *outputs,
                                              int64_t num_outputs);

/* Runs the function. Inputs and outputs are validated as in
 * moe_function_output_shapes(); in addition every output must have exactly
 * the computed dtype and shape and every non-empty tensor a non-NULL data
 * pointer. The module writes every output element. Returns MOE_INTERNAL
 * when the module's entry reports failure.
 *
 * Tensors are host memory for every target. For a "cuda" module the runtime
 * copies the inputs to the device, runs the entry on device buffers (output
 * buffers start as 0xFF bytes) and copies the outputs back; it fails with
 * MOE_UNAVAILABLE when there is no usable CUDA driver or device
 * ("no CUDA driver (libcuda.so.1 not found: ...)") and MOE_DEVICE_ERROR
 * when a driver call fails while the function runs (the message names the
 * call, the driver's error and, for a launch, the kernel).
 *
 * An expert-parallel function (moe_function_expert_parallel) takes this
 * rank's part of each tensor and is refused with MOE_UNAVAILABLE unless a
 * communicator with exactly its `ranks` is installed
 * (moe_set_communicator). */
MOE_API moe_status moe_invoke(const moe_function *function,
                              const moe_tensor *inputs, int64_t num_inputs,
                              moe_tensor *outputs, int64_t num_outputs);

/*===---------------------- Expert parallelism ---------------------------===*/

/* The `expert_parallel` section of a function compiled with
 * --expert-parallel=P (docs/ExpertParallel.md); all zero for an ordinary
 * function. */
typedef struct moe_expert_parallel_info {
  int64_t ranks;            /* P; 0 when the function is not expert-parallel */
  int64_t num_experts;      /* E, experts of the whole layer */
  int64_t experts_per_rank; /* Emax = ceil(E / P) */
} moe_expert_parallel_info;

MOE_API moe_status moe_function_expert_parallel(const moe_function *function,
                                                moe_expert_parallel_info *out);

/* The partition rule of docs/ExpertParallel.md: part `index` of `parts` of
 * [0, n) is [begin, end) with begin = index * (n / parts) + min(index,
 * n % parts): the first n % parts parts hold one item more. Experts and
 * tokens are both split by it. Fails with MOE_INVALID_ARGUMENT unless
 * n >= 0, parts >= 1 and 0 <= index < parts. */
MOE_API moe_status moe_partition_range(int64_t n, int64_t parts, int64_t index,
                                       int64_t *begin, int64_t *end);

/* A communicator among the ranks of an expert-parallel group. The runtime
 * itself has no MPI dependency: the launcher installs one
 * (libmoe_runtime_mpi.so provides an MPI implementation, see
 * moe/runtime_mpi.h) and the moe_rt_comm_* functions that compiled modules
 * call forward to it. A collective cannot report an error to compiled code,
 * so an implementation that fails or times out must report it and end the
 * job itself (the MPI one prints the rank and calls MPI_Abort). */
typedef struct moe_communicator {
  void *ctx;    /* passed back to the functions below */
  int64_t rank; /* this process, 0 <= rank < size */
  int64_t size; /* ranks in the group, >= 1 */
  /* Starts a non-blocking all-to-all-v with the semantics of
   * moe_rt_comm_all_to_all_v_start (counts have `size` entries) and returns
   * a request handle for `wait`. The buffers and counts stay valid and
   * untouched until `wait` returns. */
  int64_t (*all_to_all_v_start)(void *ctx, const void *send,
                                const int32_t *send_counts, void *recv,
                                const int32_t *recv_counts, int64_t unit_bytes);
  /* Blocks until the request has completed; each request is waited for
   * exactly once. */
  void (*wait)(void *ctx, int64_t request);
} moe_communicator;

/* Installs a copy of `communicator` for the whole process (NULL removes
 * it). Not to be called while a function runs. Fails with
 * MOE_INVALID_ARGUMENT when the size or rank is out of range or a function
 * pointer is NULL. */
MOE_API moe_status moe_set_communicator(const moe_communicator *communicator);
/* The installed communicator's size; 0 when there is none. */
MOE_API int64_t moe_communicator_size(void);
/* A group of one process (rank 0 of 1): the all-to-all copies what this
 * rank sends to itself. Install it to run a function compiled with
 * --expert-parallel=1 without MPI. Valid for the life of the process. */
MOE_API const moe_communicator *moe_self_communicator(void);

/* What this process's expert-parallel exchanges moved since the last
 * moe_comm_reset_stats(): all-to-all-v calls, and bytes to and from the
 * other ranks (the rank's own rows, copied locally, not counted). */
typedef struct moe_comm_stats {
  int64_t exchanges;
  int64_t bytes_sent;
  int64_t bytes_received;
} moe_comm_stats;
MOE_API void moe_comm_get_stats(moe_comm_stats *stats);
MOE_API void moe_comm_reset_stats(void);

/*===---------------------------- Benchmark ------------------------------===*/

/* How moe_benchmark() timed the runs. Strings live as long as the process. */
typedef struct moe_benchmark_info {
  /* "steady_clock": host time around each call of the entry (cpu);
   * "cuda_events": device time between CUDA events recorded on the
   * invocation stream before and after the entry (cuda). */
  const char *clock;
  /* "host CPU", or the CUDA device: "NVIDIA H100 80GB HBM3 (device 0 of 1,
   * compute capability 9.0, driver 13.0)". */
  const char *device;
} moe_benchmark_info;

/* Times the function alone, without the transfers of moe_invoke(): the
 * arguments are validated as in moe_invoke() and placed where the entry
 * reads them once (a "cuda" module's inputs are copied to the device once
 * and stay there), then the entry runs `warmup` times untimed and
 * `iterations` times timed; times_ms[i] receives the i-th timed run in
 * milliseconds. The outputs receive the last run's results. `warmup` >= 0,
 * `iterations` >= 1; `info` may be NULL. Fails as moe_invoke() does. */
MOE_API moe_status moe_benchmark(const moe_function *function,
                                 const moe_tensor *inputs, int64_t num_inputs,
                                 moe_tensor *outputs, int64_t num_outputs,
                                 int64_t warmup, int64_t iterations,
                                 double *times_ms, moe_benchmark_info *info);

/*===--------------------------- Worker pool -----------------------------===*/

/* Sets the worker-pool size (the calling thread counts as one). n <= 0
 * restores the default: $MOE_NUM_THREADS when it is a positive integer, else
 * the number of hardware threads. Fails with MOE_INVALID_ARGUMENT when
 * called from inside a parallel loop. Values above 1024 are clamped. */
MOE_API moe_status moe_set_num_threads(int64_t n);
/* The current worker-pool size (>= 1). */
MOE_API int64_t moe_get_num_threads(void);

/*===------------- Routing profiles (docs/RoutingProfiles.md) ------------===*/

/* Starts counting the routing decisions that modules compiled with
 * `moe-compile --record-routing` report (every route's expert ids): tokens
 * per expert, pairs of experts chosen together and how well the previous
 * layer's tokens predict the choice (pre-gating), per layer. Counts start
 * from zero; moe_routing_profile_stop() stops counting. */
MOE_API void moe_routing_profile_start(void);
MOE_API void moe_routing_profile_stop(void);
/* The route reports counted since the start: 0 after running modules means
 * they were compiled without --record-routing. */
MOE_API int64_t moe_routing_profile_records(void);
/* Writes the counts as JSON to `path` (replacing it whole). With `merge`
 * non-zero and a profile at `path`, its counts are added first: layers
 * must route to the same number of experts and top-k (else
 * MOE_INVALID_ARGUMENT, nothing written). MOE_IO_ERROR when it cannot be
 * written. */
MOE_API moe_status moe_routing_profile_write(const char *path, int merge);

/*===---------- Expert cache (docs/Runtime.md, "Expert cache") -----------===*/

/* What the expert cache counted since the start or the last reset. A
 * "slice" is one expert of one expert-stacked weight of a module compiled
 * with `moe-compile --prefetch-experts`. */
typedef struct moe_expert_cache_stats {
  int64_t used;             /* slices layers announced they are reading */
  int64_t used_bytes;       /* their bytes */
  int64_t used_predicted;   /* used slices a prediction named beforehand */
  int64_t predicted;        /* slices named by predictions (pre-gating) */
  int64_t read_ahead_bytes; /* bytes the worker found outside memory and read */
  int64_t evictions;        /* slices evicted to keep the budget */
  int64_t evicted_bytes;
  int64_t resident_bytes; /* slice bytes the budget counts now */
} moe_expert_cache_stats;

/* What the expert cache reads ahead of use. */
typedef enum moe_read_ahead {
  MOE_READ_AHEAD_NONE = 0,   /* nothing: experts are read when used */
  MOE_READ_AHEAD_CHOSEN = 1, /* a layer's chosen experts, once it is routed */
  MOE_READ_AHEAD_ALL = 2     /* those and the next layer's predicted ones */
} moe_read_ahead;

/* Sets the expert cache's memory budget in bytes (0: none, the default)
 * and what it reads ahead on its worker thread (MOE_READ_AHEAD_ALL by
 * default). With a budget, at most that many bytes of announced experts
 * stay in memory: the ones announced longest ago leave the process and the
 * page cache (they are read from the module file again when used), as on a
 * machine whose memory does not hold all of a model's experts; lowering it
 * evicts at once. Set it before loading a module so that the module's
 * weights are not mapped with huge pages, which evict only whole.
 * MOE_INVALID_ARGUMENT for a negative budget or an unknown mode. */
MOE_API moe_status moe_expert_cache_configure(int64_t memory_limit,
                                              moe_read_ahead read_ahead);
MOE_API void moe_expert_cache_get_stats(moe_expert_cache_stats *stats);
MOE_API void moe_expert_cache_reset_stats(void);
/* Returns when the worker has read every expert announced so far. */
MOE_API void moe_expert_cache_wait(void);

/*===------------- Module-facing functions (docs/Runtime.md) -------------===*/

/* Runs body(ctx, begin, end) over a partition of [0, n) on the worker pool,
 * the calling thread included, and returns when every chunk is done. A call
 * made from inside a body (or while another loop occupies the pool) runs the
 * whole range on the calling thread. */
MOE_API void moe_rt_parallel_for(int64_t n,
                                 void (*body)(void *ctx, int64_t begin,
                                              int64_t end),
                                 void *ctx);
/* Same as moe_get_num_threads(). */
MOE_API int64_t moe_rt_num_threads(void);

/* A compiled module's intermediate buffers (memref.alloc / memref.dealloc
 * through finalize-memref-to-llvm's generic functions): malloc'd blocks,
 * but for blocks of 32 MiB or more, which are mappings of their own that
 * stay cached after their free (up to 4 GiB in all) so that the next call
 * finds them mapped; MOE_MALLOC_DEFAULTS=1 unmaps them at once. */
MOE_API void *_mlir_memref_to_llvm_alloc(size_t bytes);
MOE_API void _mlir_memref_to_llvm_free(void *pointer);

/* The communicator ABI of expert-parallel modules (docs/ExpertParallel.md).
 * They forward to the installed communicator. moe_invoke() runs an
 * expert-parallel function only when a communicator of its `ranks` is
 * installed, so these cannot fail for a compiled module; called otherwise
 * (no communicator, `ranks` differing from its size, an unknown request)
 * they print what was wrong and abort the process, since compiled code
 * has no way to see an error. */
MOE_API int64_t moe_rt_comm_rank(int64_t ranks);
MOE_API int64_t moe_rt_comm_all_to_all_v_start(int64_t ranks, const void *send,
                                               const int32_t *send_counts,
                                               void *recv,
                                               const int32_t *recv_counts,
                                               int64_t unit_bytes);
MOE_API void moe_rt_comm_wait(int64_t request);
/* Reports a route's expert ids ([tokens, top_k], row-major; -1 or ids from
 * `experts` on for slots without an expert) as layer `layer` to the
 * routing profile; nothing unless one is being recorded. */
MOE_API void moe_rt_record_routing(int64_t layer, int64_t experts,
                                   int64_t tokens, int64_t top_k,
                                   const int32_t *ids);
/* Reports a prediction of layer `layer`'s choice, made before it runs
 * (its router on the previous layer's tokens): kept until the layer's own
 * moe_rt_record_routing of the same shape, which counts the predicted
 * experts among the chosen ones. */
MOE_API void moe_rt_record_predicted_routing(int64_t layer, int64_t experts,
                                             int64_t tokens, int64_t top_k,
                                             const int32_t *ids);

/* Announces that layer `layer` is about to read the experts named in
 * `ids` ([tokens, top_k], row-major; ids outside [0, experts) are ignored)
 * of `weights`, an expert-stacked weight of `expert_bytes` bytes per
 * expert (`predicted` non-zero: a guess made a layer early). Hands them to
 * the expert cache; nothing else. */
MOE_API void moe_rt_prefetch_experts(int64_t layer, int64_t predicted,
                                     int64_t experts, int64_t tokens,
                                     int64_t top_k, const int32_t *ids,
                                     const void *weights, int64_t expert_bytes);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* MOE_RUNTIME_H */
