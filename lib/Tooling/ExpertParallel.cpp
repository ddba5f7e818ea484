//===- ExpertParallel.cpp - moe-run under mpirun --------------------------===//

#include "moe-mlir/Tooling/ExpertParallel.h"

#include "moe-mlir/Support/Npy.h"
#include "moe-mlir/Tooling/Benchmark.h"
#include "moe-mlir/Tooling/Diagnostics.h"
#include "moe-mlir/Tooling/HostTensor.h"
#include "moe-mlir/Tooling/Invocation.h"
#include "moe/runtime_nccl.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <exception>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace moe::tooling {

int64_t launcherSize() {
  for (const char *var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"})
    if (const char *v = std::getenv(var); v && *v)
      return std::atoll(v);
  return 0;
}

int64_t launcherRank() {
  for (const char *var : {"OMPI_COMM_WORLD_RANK", "PMI_RANK"})
    if (const char *v = std::getenv(var); v && *v)
      return std::atoll(v);
  return 0;
}

namespace {

/// libmoe_runtime_mpi.so (moe/runtime_mpi.h), loaded with dlopen so that
/// moe-run neither links MPI nor needs it outside mpirun.
struct MpiLibrary {
  int (*init)(int *, char ***, const char *, double, char *, size_t);
  void (*finalize)();
  int64_t (*rank)();
  int64_t (*size)();
  const moe_communicator *(*communicator)();
  void (*barrier)();
  double (*allreduceMax)(double);
  int64_t (*allreduceSum)(int64_t);
  int64_t (*gatherRows)(const void *, int64_t, int64_t, void *, int64_t);
  void (*broadcast)(void *, size_t, int);
  double (*timeout)();
  void (*abort)(const char *);
};

/// $MOE_RUNTIME_MPI, else libmoe_runtime_mpi.so in the directory
/// libmoe_runtime.so was loaded from (the build's lib/ or an install's),
/// else the bare name for the dynamic loader's search.
std::string mpiLibraryPath() {
  if (const char *env = std::getenv("MOE_RUNTIME_MPI"); env && *env)
    return env;
  Dl_info info{};
  if (dladdr(reinterpret_cast<void *>(&moe_status_name), &info) &&
      info.dli_fname) {
    std::string runtime = info.dli_fname;
    size_t slash = runtime.rfind('/');
    if (slash != std::string::npos)
      return runtime.substr(0, slash + 1) + "libmoe_runtime_mpi.so";
  }
  return "libmoe_runtime_mpi.so";
}

MpiLibrary loadMpiLibrary() {
  std::string path = mpiLibraryPath();
  // RTLD_GLOBAL: Open MPI's plugins, which libmpi dlopens, resolve libmpi's
  // symbols globally.
  void *h = dlopen(path.c_str(), RTLD_NOW | RTLD_GLOBAL);
  if (!h) {
    const char *err = dlerror();
    fail("cannot load the MPI support library " + path + ": " +
         (err ? err : "unknown error") +
         " (moe-run was built without MPI, or set MOE_RUNTIME_MPI)");
  }
  MpiLibrary lib{};
  auto sym = [&](auto &fnPtr, const char *name) {
    void *p = dlsym(h, name);
    if (!p)
      fail(path + " lacks " + name);
    fnPtr = reinterpret_cast<std::remove_reference_t<decltype(fnPtr)>>(p);
  };
  sym(lib.init, "moe_mpi_init");
  sym(lib.finalize, "moe_mpi_finalize");
  sym(lib.rank, "moe_mpi_rank");
  sym(lib.size, "moe_mpi_size");
  sym(lib.communicator, "moe_mpi_communicator");
  sym(lib.barrier, "moe_mpi_barrier");
  sym(lib.allreduceMax, "moe_mpi_allreduce_max");
  sym(lib.allreduceSum, "moe_mpi_allreduce_sum");
  sym(lib.gatherRows, "moe_mpi_gather_rows");
  sym(lib.broadcast, "moe_mpi_broadcast");
  sym(lib.timeout, "moe_mpi_timeout");
  sym(lib.abort, "moe_mpi_abort");
  return lib;
}

/// The NCCL communicator's bootstrap over libmoe_runtime_mpi.so (ctx: the
/// MpiLibrary).
void mpiBroadcast(void *ctx, void *data, size_t bytes, int64_t root) {
  static_cast<MpiLibrary *>(ctx)->broadcast(data, bytes,
                                            static_cast<int>(root));
}
void mpiAbortJob(void *ctx, const char *message) {
  static_cast<MpiLibrary *>(ctx)->abort(message);
  std::abort(); // moe_mpi_abort does not return
}

/// A group of one has nobody to broadcast to or to abort.
void selfBroadcast(void *, void *, size_t, int64_t) {}
void selfAbortJob(void *, const char *message) {
  std::fprintf(stderr, "moe-run: error: %s\n", message);
  std::fflush(stderr);
  std::abort();
}

/// The part of the rows [0, n) that `rank` of `ranks` holds.
std::pair<int64_t, int64_t> partRange(int64_t n, int64_t ranks, int64_t rank) {
  int64_t b = 0, e = 0;
  check(moe_partition_range(n, ranks, rank, &b, &e));
  return {b, e};
}

/// Reads this rank's part of input `index`: its token rows, its experts
/// padded with zeros to Emax, or (replicated) the whole file. The full
/// file's header is checked against the manifest first, so that every rank
/// reports a wrong file the same way. `tokens` carries the token count of
/// the first tokens-split input for the others to agree with.
HostTensor readInputPart(const std::string &path, size_t index,
                         const moe_arg_info &spec,
                         const moe_expert_parallel_info &ep, int64_t rank,
                         std::optional<std::pair<int64_t, size_t>> &tokens,
                         std::vector<int64_t> &fullShape) {
  std::string where = "input " + std::to_string(index) + " '" + spec.name + "'";
  if (spec.split == MOE_SPLIT_NONE) {
    HostTensor t = readInput(path, index, spec);
    fullShape = t.shape;
    return t;
  }
  if (!toNpy(spec.dtype))
    fail(where + " has dtype " + moe_dtype_name(spec.dtype) +
         ", which .npy files cannot provide");
  npy::Header h;
  try {
    h = npy::readHeader(path);
  } catch (const std::exception &e) {
    fail(where + ": " + e.what());
  }
  fullShape = h.shape;
  moe_dtype have = fromNpy(h.dtype);
  checkInputDtype(where, path, have, spec.dtype, /*announce=*/rank == 0);
  std::string declared = "[";
  for (int32_t d = 0; d < spec.rank; ++d)
    declared +=
        (d ? ", " : "") + (spec.dims[d] ? std::string(spec.dims[d])
                                        : std::to_string(spec.shape[d]));
  declared += "]";
  if (static_cast<int64_t>(h.shape.size()) != spec.rank)
    fail(where + ": rank is " + std::to_string(h.shape.size()) +
         " but the function expects rank " + std::to_string(spec.rank) + " " +
         declared);
  // Dimension 0 is where the file and the rank's part differ; the others
  // are checked here with the runtime's wording, and again by the runtime.
  for (int32_t d = 1; d < spec.rank; ++d)
    if (!spec.dims[d] && h.shape[d] != spec.shape[d])
      fail(where + ": dimension " + std::to_string(d) + " is " +
           std::to_string(h.shape[d]) + " but the function expects " +
           std::to_string(spec.shape[d]) + " (shape " + declared + ")");

  const int64_t rows = h.shape[0];
  int64_t partRows;
  std::pair<int64_t, int64_t> range;
  if (spec.split == MOE_SPLIT_TOKENS) {
    if (tokens && tokens->first != rows)
      fail(where + ": dimension 0 is " + std::to_string(rows) + " but input " +
           std::to_string(tokens->second) + " has " +
           std::to_string(tokens->first) +
           " token rows (both are split by tokens)");
    if (!tokens)
      tokens = std::make_pair(rows, index);
    range = partRange(rows, ep.ranks, rank);
    partRows = range.second - range.first;
  } else {
    if (rows != ep.num_experts)
      fail(where + ": dimension 0 is " + std::to_string(rows) +
           " but the function was compiled for " +
           std::to_string(ep.num_experts) + " experts (" + path +
           " must hold all of them; each rank reads its own)");
    range = partRange(rows, ep.ranks, rank);
    partRows = ep.experts_per_rank;
  }
  npy::Array a;
  try {
    a = npy::readRows(path, h, range.first, range.second);
    if (have != spec.dtype)
      a = npy::fromDoubles(*toNpy(spec.dtype), a.shape, npy::toDoubles(a));
  } catch (const std::exception &e) {
    fail(where + ": " + e.what());
  }
  std::vector<int64_t> shape = h.shape;
  shape[0] = partRows;
  HostTensor t = HostTensor::allocate(spec.dtype, shape);
  // Padding experts are zeros (no token is routed to them).
  std::memset(t.data.get(), 0, t.bytes);
  if (a.bytes.size() > t.bytes)
    fail(where + ": internal size mismatch");
  copyBytes(t.data.get(), a.bytes.data(), a.bytes.size());
  return t;
}

/// Output `t` of every rank, concatenated on rank 0 as the split says
/// (tokens: all rows; experts: each rank's own experts, without padding;
/// replicated: rank 0's). Other ranks get an empty tensor.
HostTensor gatherOutput(MpiLibrary &mpi, const moe_arg_info &spec,
                        const HostTensor &t, const moe_expert_parallel_info &ep,
                        int64_t rank) {
  if (spec.split == MOE_SPLIT_NONE || t.shape.empty())
    return rank == 0 ? t.clone() : HostTensor{};
  int64_t rows = t.shape[0];
  if (spec.split == MOE_SPLIT_EXPERTS) {
    auto r = partRange(ep.num_experts, ep.ranks, rank);
    rows = r.second - r.first;
  }
  const int64_t rowBytes = static_cast<int64_t>(
      product(t.shape, 1, t.shape.size()) * moe_dtype_size(t.dtype));
  const int64_t total = mpi.allreduceSum(rows);
  HostTensor out;
  if (rank == 0) {
    std::vector<int64_t> shape = t.shape;
    shape[0] = total;
    out = HostTensor::allocate(t.dtype, shape);
  }
  mpi.gatherRows(t.data.get(), rows, rowBytes,
                 rank == 0 ? out.data.get() : nullptr, rank == 0 ? total : 0);
  return out;
}

} // namespace

int runExpertParallel(const RunOptions &o, const moe_module *mod,
                      const moe_function *fn,
                      const moe_expert_parallel_info &ep, int64_t worldSize,
                      int argc, char **argv) {
  const std::string name = moe_function_name(fn);
  const std::string p = std::to_string(ep.ranks);
  if (ep.ranks == 0)
    fail("function '" + name +
         "' is not expert-parallel but moe-run was "
         "started as " +
         std::to_string(worldSize) +
         " ranks: run it without mpirun, or compile it with "
         "--expert-parallel=" +
         std::to_string(worldSize));
  if (o.check)
    fail("--check is not available for expert-parallel function '" + name +
         "': no rank holds all the weights, so there is no reference; "
         "compare its output with that of the module compiled without "
         "--expert-parallel instead");
  if (worldSize == 0 && ep.ranks > 1)
    fail("function '" + name + "' was compiled for --expert-parallel=" + p +
         ": run it under mpirun -np " + p);
  if (worldSize != 0 && worldSize != ep.ranks)
    fail("function '" + name + "' was compiled for --expert-parallel=" + p +
         " but moe-run was started as " + std::to_string(worldSize) + " rank" +
         (worldSize == 1 ? "" : "s") + ": run it under mpirun -np " + p);

  // From here on a failure on one rank must not leave the others waiting
  // in a collective: reportFailure() aborts the job once MPI is up.
  // Static: the NCCL communicator holds on to it (boot.ctx) and is not
  // destroyed when a failure unwinds this frame.
  static MpiLibrary mpi{};
  // A cuda module exchanges device buffers: NCCL's job, with MPI only
  // bootstrapping it and serving the launcher (gather, barriers).
  const bool onDevice = std::strcmp(moe_module_target(mod), "cuda") == 0;
  const moe_communicator *nccl = nullptr;
  moe_nccl_bootstrap boot{};
  int64_t rank = 0;
  if (worldSize > 0) {
    mpi = loadMpiLibrary();
    char error[512];
    if (mpi.init(&argc, &argv, "moe-run", o.commTimeout, error, sizeof error) !=
        0)
      fail(std::string("cannot initialise MPI: ") + error);
    setJobAbort(mpi.abort);
    rank = mpi.rank();
    if (mpi.size() != ep.ranks)
      fail("function '" + name + "' was compiled for --expert-parallel=" + p +
           " but MPI_COMM_WORLD has " + std::to_string(mpi.size()) +
           " ranks: run it under mpirun -np " + p);
    boot.rank = rank;
    boot.size = mpi.size();
    boot.timeout_s = mpi.timeout();
    boot.ctx = &mpi;
    boot.broadcast = mpiBroadcast;
    boot.abort_job = mpiAbortJob;
  } else {
    // The self communicator's memmove cannot copy device memory; the NCCL
    // communicator of one rank copies on the device and loads no NCCL.
    boot.rank = 0;
    boot.size = 1;
    boot.timeout_s = o.commTimeout > 0 ? o.commTimeout : 120;
    boot.broadcast = selfBroadcast;
    boot.abort_job = selfAbortJob;
  }
  setReportingRank(rank);
  if (onDevice) {
    check(moe_nccl_communicator_create(&boot, &nccl),
          "cannot set up the NCCL communicator of cuda function '" + name +
              "'");
    check(moe_set_communicator(nccl));
  } else {
    check(moe_set_communicator(worldSize > 0 ? mpi.communicator()
                                                 : moe_self_communicator()));
  }

  std::vector<moe_arg_info> inSpecs = functionArgs(fn, true),
                            outSpecs = functionArgs(fn, false);
  std::vector<HostTensor> inputs;
  std::vector<std::vector<int64_t>> fullShapes(inSpecs.size());
  std::optional<std::pair<int64_t, size_t>> tokens;
  for (size_t i = 0; i < o.inputs.size(); ++i)
    inputs.push_back(readInputPart(o.inputs[i], i, inSpecs[i], ep, rank, tokens,
                                   fullShapes[i]));

  std::vector<HostTensor> outputs =
      allocateOutputs(fn, inputs, outSpecs.size());

  auto barrier = [&] {
    if (worldSize > 0)
      mpi.barrier();
  };
  invoke(fn, inputs, outputs);
  for (size_t i = 0; i < outputs.size(); ++i)
    if (int64_t n = countPoison(outputs[i]))
      warn("rank " + std::to_string(rank) + ": output " + std::to_string(i) +
           " '" + outSpecs[i].name + "': " + std::to_string(n) + " of " +
           std::to_string(outputs[i].numel()) +
           " elements still hold the 0xFF poison (never written?)");

  std::vector<HostTensor> whole;
  for (size_t i = 0; i < outputs.size(); ++i)
    whole.push_back(worldSize > 0
                        ? gatherOutput(mpi, outSpecs[i], outputs[i], ep, rank)
                        : outputs[i].clone());
  if (rank == 0) {
    for (size_t i = 0; i < o.outputs.size(); ++i)
      writeOutput(o.outputs[i], outSpecs[i], whole[i], o.outputF32);
    if (o.outputs.empty() && !o.benchmark)
      for (size_t i = 0; i < whole.size(); ++i)
        printSummary(outSpecs[i], whole[i]);
  }

  if (o.benchmark) {
    // Every run starts together; a run takes as long as its slowest rank.
    for (int i = 0; i < 2; ++i) {
      barrier();
      invoke(fn, inputs, outputs);
    }
    std::vector<double> seconds;
    moe_comm_reset_stats();
    for (int64_t i = 0; i < o.benchmark; ++i) {
      barrier();
      auto start = std::chrono::steady_clock::now();
      invoke(fn, inputs, outputs);
      double t = std::chrono::duration<double>(
                     std::chrono::steady_clock::now() - start)
                     .count();
      seconds.push_back(worldSize > 0 ? mpi.allreduceMax(t) : t);
    }
    if (rank == 0) {
      std::printf("benchmark: %lld runs after 2 warm-up runs, %lld threads "
                  "per rank, ranks: %lld (time per run: the slowest rank)\n",
                  static_cast<long long>(o.benchmark),
                  static_cast<long long>(moe_get_num_threads()),
                  static_cast<long long>(ep.ranks));
      // Tokens of the whole layer, not of this rank.
      std::optional<int64_t> tokenCount;
      if (!fullShapes.empty() && !fullShapes.front().empty())
        tokenCount =
            product(fullShapes.front(), 0, fullShapes.front().size() - 1);
      printBenchmarkSummary(fn, inputs, seconds, /*teraflops=*/false,
                            tokenCount);
    }
    // What the exchanges moved per run: all ranks together, and the rank
    // that received the most (the one the others wait for).
    moe_comm_stats comm{};
    moe_comm_get_stats(&comm);
    int64_t total = comm.bytes_sent, busiest = comm.bytes_received;
    if (worldSize > 0) {
      total = mpi.allreduceSum(total);
      busiest =
          static_cast<int64_t>(mpi.allreduceMax(static_cast<double>(busiest)));
    }
    if (rank == 0) {
      double runs = static_cast<double>(o.benchmark);
      std::printf("all-to-all per run: %lld exchanges per rank, %.0f bytes "
                  "between ranks in all, at most %.0f received by one rank\n",
                  static_cast<long long>(comm.exchanges / o.benchmark),
                  double(total) / runs, double(busiest) / runs);
    }
  }
  std::fflush(stdout);
  check(moe_set_communicator(nullptr));
  moe_nccl_communicator_destroy(nccl);
  if (worldSize > 0) {
    setJobAbort(nullptr);
    mpi.finalize();
  }
  return 0;
}

} // namespace moe::tooling
