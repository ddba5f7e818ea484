//===- RuntimeModule.cpp - moe_mlir._runtime: Python binding of the runtime ===//
//
// A thin pybind11 layer over the runtime's C API (moe/runtime.h): loading
// modules, reading their signatures, running and timing functions on
// buffer-protocol objects (numpy arrays, torch CPU tensors' numpy views),
// and the MPI communicator of expert-parallel modules. Everything that is
// policy (argument matching by name, torch conversion, caching, checking,
// generation) lives in the Python package; this file only moves buffers in
// and out of the C API and turns its failures into Python exceptions
// carrying the runtime's message.
//
// The call path (Function.invoke) is the one that matters for speed: it
// reads the buffers without copying (a C-contiguous buffer is passed as
// is), asks the runtime for the output shapes, allocates numpy outputs and
// runs the function with the GIL released.
//
//===----------------------------------------------------------------------===//

#include "moe/runtime.h"

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <chrono>
#include <dlfcn.h>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace py = pybind11;

namespace {

//===----------------------------------------------------------------------===//
// Errors
//===----------------------------------------------------------------------===//

/// A failed runtime call; translated into the moe_mlir.errors class of its
/// status with the runtime's message.
struct StatusError {
  moe_status status;
  std::string message;
};

[[noreturn]] void throwStatus(moe_status status, std::string message) {
  throw StatusError{status, std::move(message)};
}

/// Throws the runtime's message of the calling thread when `status` fails.
void check(moe_status status) {
  if (status != MOE_OK)
    throwStatus(status, moe_last_error());
}

/// Raises `error` as the Python class moe_mlir.errors maps `status` to. The
/// classes are defined in Python (they derive from ValueError,
/// FileNotFoundError, ... as well) and looked up by name at raise time, so
/// that this module has no import-order dependency on the package.
void raiseStatus(const StatusError &error) {
  py::object errors = py::module_::import("moe_mlir.errors");
  py::object cls = errors.attr("error_class")(
      static_cast<int>(error.status), moe_status_name(error.status));
  PyErr_SetObject(cls.ptr(), py::str(error.message).ptr());
}

//===----------------------------------------------------------------------===//
// Buffers
//===----------------------------------------------------------------------===//

/// The moe dtype of a buffer-protocol format and item size, or -1. uint16
/// stands for bf16 (numpy has no bfloat16; callers pass bf16 bit patterns as
/// uint16), which `expected` decides.
int dtypeOfFormat(const char *format, Py_ssize_t itemsize, moe_dtype expected) {
  if (!format)
    format = "B";
  // Byte order / size prefixes: native or little-endian only.
  if (*format == '@' || *format == '=' || *format == '<')
    ++format;
  if (!*format || format[1])
    return -1;
  switch (*format) {
  case 'f':
    return itemsize == 4 ? MOE_DTYPE_F32 : -1;
  case 'd':
    return itemsize == 8 ? MOE_DTYPE_F64 : -1;
  case 'e':
    return itemsize == 2 ? MOE_DTYPE_F16 : -1;
  case '?':
    return itemsize == 1 ? MOE_DTYPE_BOOL : -1;
  case 'B':
    return itemsize == 1 ? MOE_DTYPE_U8 : -1;
  case 'H':
    return itemsize == 2 && expected == MOE_DTYPE_BF16 ? MOE_DTYPE_BF16 : -1;
  case 'b':
  case 'h':
  case 'i':
  case 'l':
  case 'q':
    switch (itemsize) {
    case 1:
      return MOE_DTYPE_I8;
    case 4:
      return MOE_DTYPE_I32;
    case 8:
      return MOE_DTYPE_I64;
    }
    return -1;
  }
  return -1;
}

/// The numpy dtype that holds a moe dtype (uint16 for bf16).
py::dtype numpyDtype(moe_dtype dtype) {
  switch (dtype) {
  case MOE_DTYPE_F32:
    return py::dtype("float32");
  case MOE_DTYPE_F16:
    return py::dtype("float16");
  case MOE_DTYPE_BF16:
    return py::dtype("uint16");
  case MOE_DTYPE_F64:
    return py::dtype("float64");
  case MOE_DTYPE_I32:
    return py::dtype("int32");
  case MOE_DTYPE_I64:
    return py::dtype("int64");
  case MOE_DTYPE_I8:
    return py::dtype("int8");
  case MOE_DTYPE_U8:
    return py::dtype("uint8");
  case MOE_DTYPE_BOOL:
    return py::dtype("bool");
  }
  throwStatus(MOE_INTERNAL, "unknown dtype " + std::to_string(dtype));
}

/// Py_buffer views of the arguments, released on destruction.
class BufferViews {
public:
  BufferViews() = default;
  BufferViews(const BufferViews &) = delete;
  BufferViews &operator=(const BufferViews &) = delete;
  ~BufferViews() {
    for (Py_buffer &view : views)
      PyBuffer_Release(&view);
  }

  /// Views `object` as a C-contiguous buffer. A strided or non-buffer object
  /// is first made one by numpy.ascontiguousarray (the copy is kept alive
  /// here); everything else is passed without copying.
  Py_buffer &add(py::handle object) {
    views.emplace_back();
    Py_buffer &view = views.back();
    constexpr int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT;
    if (PyObject_GetBuffer(object.ptr(), &view, flags) == 0)
      return view;
    PyErr_Clear();
    py::object copy;
    try {
      copy = py::module_::import("numpy").attr("ascontiguousarray")(object);
    } catch (...) {
      views.pop_back();
      throw;
    }
    if (PyObject_GetBuffer(copy.ptr(), &view, flags) != 0) {
      views.pop_back();
      throw py::error_already_set();
    }
    return view;
  }

  /// Must be called before add(): the returned references stay valid only
  /// while the vector does not grow past `n`.
  void reserve(size_t n) { views.reserve(n); }

private:
  std::vector<Py_buffer> views;
};

//===----------------------------------------------------------------------===//
// Modules and functions
//===----------------------------------------------------------------------===//

/// A loaded module, unloaded when the last Module and Function referring to
/// it are gone.
struct ModuleState {
  moe_module *module = nullptr;
  ~ModuleState() { moe_module_unload(module); }
};

py::object dimValue(const moe_arg_info &info, int32_t d) {
  if (info.dims[d])
    return py::str(info.dims[d]);
  return py::int_(info.shape[d]);
}

const char *splitName(moe_split split) {
  switch (split) {
  case MOE_SPLIT_TOKENS:
    return "tokens";
  case MOE_SPLIT_EXPERTS:
    return "experts";
  default:
    return "none";
  }
}

/// One input or output as a tuple (name, dtype, shape, split); a symbolic
/// dimension is its symbol expression ("T", "B*S"), a static one an int.
py::tuple argInfoTuple(const moe_arg_info &info) {
  py::tuple shape(info.rank);
  for (int32_t d = 0; d < info.rank; ++d)
    shape[d] = dimValue(info, d);
  return py::make_tuple(info.name, moe_dtype_name(info.dtype), shape,
                        splitName(info.split));
}

class Function {
public:
  Function(std::shared_ptr<ModuleState> state, const moe_function *fn)
      : state(std::move(state)), fn(fn) {
    numInputs = moe_function_input_count(fn);
    numOutputs = moe_function_output_count(fn);
    inputInfo.resize(numInputs);
    for (int64_t i = 0; i < numInputs; ++i)
      check(moe_function_input(fn, i, &inputInfo[i]));
  }

  std::string name() const { return moe_function_name(fn); }

  py::list args(bool inputs) const {
    py::list list;
    int64_t n = inputs ? numInputs : numOutputs;
    for (int64_t i = 0; i < n; ++i) {
      moe_arg_info info;
      check(inputs ? moe_function_input(fn, i, &info)
                   : moe_function_output(fn, i, &info));
      list.append(argInfoTuple(info));
    }
    return list;
  }

  py::object referenceJson() const {
    const char *text = moe_function_reference_json(fn);
    return text ? py::object(py::str(text)) : py::none();
  }

  py::tuple expertParallel() const {
    moe_expert_parallel_info info;
    check(moe_function_expert_parallel(fn, &info));
    return py::make_tuple(info.ranks, info.num_experts, info.experts_per_rank);
  }

  /// Runs the function on `arguments` (one buffer object per input, in
  /// manifest order) and returns the outputs as new numpy arrays.
  py::list invoke(const py::sequence &arguments) const {
    Call call(*this, arguments);
    {
      py::gil_scoped_release release;
      call.status = moe_invoke(fn, call.inputs.data(), numInputs,
                               call.outputs.data(), numOutputs);
    }
    call.check();
    return call.results;
  }

  /// The output (dtype, shape) pairs the runtime computes for `arguments`,
  /// which are validated as for invoke but not read.
  py::list outputShapes(const py::sequence &arguments) const {
    std::vector<moe_tensor> inputs = describe(arguments, nullptr);
    std::vector<moe_tensor> outputs(numOutputs);
    check(moe_function_output_shapes(fn, inputs.data(), numInputs,
                                     outputs.data(), numOutputs));
    py::list list;
    for (const moe_tensor &t : outputs)
      list.append(py::make_tuple(moe_dtype_name(t.dtype),
                                 py::tuple(py::cast(std::vector<int64_t>(
                                     t.shape, t.shape + t.rank)))));
    return list;
  }

  /// moe_benchmark: (times in ms as a numpy array, clock, device, outputs).
  py::tuple benchmark(const py::sequence &arguments, int64_t warmup,
                      int64_t iterations) const {
    if (iterations < 1 || warmup < 0)
      throwStatus(MOE_INVALID_ARGUMENT,
                  "benchmark needs iterations >= 1 and warmup >= 0");
    Call call(*this, arguments);
    py::array_t<double> times(iterations);
    double *timesData = times.mutable_data();
    moe_benchmark_info info{};
    {
      py::gil_scoped_release release;
      call.status = moe_benchmark(fn, call.inputs.data(), numInputs,
                                  call.outputs.data(), numOutputs, warmup,
                                  iterations, timesData, &info);
    }
    call.check();
    return py::make_tuple(times, info.clock ? info.clock : "",
                          info.device ? info.device : "", call.results);
  }

  /// Seconds per call of a C caller's loop over moe_invoke on the same
  /// arguments (outputs allocated once): the baseline the Python call's
  /// overhead is measured against.
  double timeCInvoke(const py::sequence &arguments, int64_t iterations) const {
    if (iterations < 1)
      throwStatus(MOE_INVALID_ARGUMENT, "iterations must be >= 1");
    Call call(*this, arguments);
    moe_status status = MOE_OK;
    std::chrono::duration<double> elapsed{};
    {
      py::gil_scoped_release release;
      auto start = std::chrono::steady_clock::now();
      for (int64_t i = 0; i < iterations && status == MOE_OK; ++i)
        status = moe_invoke(fn, call.inputs.data(), numInputs,
                            call.outputs.data(), numOutputs);
      elapsed = std::chrono::steady_clock::now() - start;
    }
    check(status);
    return elapsed.count() / static_cast<double>(iterations);
  }

private:
  /// The arguments of one call: views of the inputs, numpy outputs of the
  /// shapes the runtime computed.
  struct Call {
    BufferViews views;
    std::vector<moe_tensor> inputs, outputs;
    py::list results;
    moe_status status = MOE_OK;

    Call(const Function &f, const py::sequence &arguments) {
      inputs = f.describe(arguments, &views);
      outputs = f.shapesFor(inputs);
      for (moe_tensor &t : outputs) {
        std::vector<py::ssize_t> shape(t.shape, t.shape + t.rank);
        py::array array(numpyDtype(t.dtype), shape);
        t.data = array.mutable_data();
        results.append(std::move(array));
      }
    }

    void check() const {
      if (status != MOE_OK)
        throwStatus(status, moe_last_error());
    }
  };

  /// The outputs' dtypes and shapes for `inputs`. Calls in a loop repeat
  /// the same input shapes, so the last answer is kept and reused when the
  /// dtypes and shapes match; moe_invoke validates every call anyway.
  std::vector<moe_tensor> shapesFor(const std::vector<moe_tensor> &inputs) const {
    {
      std::lock_guard<std::mutex> lock(shapeCache->mutex);
      if (shapeCache->valid && sameShapes(shapeCache->inputs, inputs))
        return shapeCache->outputs;
    }
    std::vector<moe_tensor> outputs(numOutputs);
    check(moe_function_output_shapes(fn, inputs.data(), numInputs,
                                     outputs.data(), numOutputs));
    std::lock_guard<std::mutex> lock(shapeCache->mutex);
    shapeCache->inputs = inputs;
    shapeCache->outputs = outputs;
    shapeCache->valid = true;
    return outputs;
  }

  static bool sameShapes(const std::vector<moe_tensor> &a,
                         const std::vector<moe_tensor> &b) {
    if (a.size() != b.size())
      return false;
    for (size_t i = 0; i < a.size(); ++i) {
      if (a[i].dtype != b[i].dtype || a[i].rank != b[i].rank)
        return false;
      for (int32_t d = 0; d < a[i].rank; ++d)
        if (a[i].shape[d] != b[i].shape[d])
          return false;
    }
    return true;
  }

  struct ShapeCache {
    std::mutex mutex;
    bool valid = false;
    std::vector<moe_tensor> inputs, outputs;
  };

  /// moe_tensors describing `arguments`; with `views`, their data too.
  std::vector<moe_tensor> describe(const py::sequence &arguments,
                                   BufferViews *views) const {
    const size_t n = arguments.size();
    if (static_cast<int64_t>(n) != numInputs)
      throwStatus(MOE_INVALID_ARGUMENT,
                  "function '" + name() + "' takes " +
                      std::to_string(numInputs) + " inputs but " +
                      std::to_string(n) + " were given");
    BufferViews local;
    BufferViews &v = views ? *views : local;
    v.reserve(n);
    std::vector<moe_tensor> tensors(n);
    for (size_t i = 0; i < n; ++i) {
      const moe_arg_info &info = inputInfo[i];
      py::handle argument = arguments[i];
      moe_tensor &t = tensors[i];
      if (PyTuple_Check(argument.ptr())) {
        describeRaw(i, argument.ptr(), t);
        continue;
      }
      Py_buffer &view = v.add(argument);
      std::string where = "input " + std::to_string(i) + " '" + info.name + "'";
      int dtype = dtypeOfFormat(view.format, view.itemsize, info.dtype);
      if (dtype < 0)
        throwStatus(MOE_INVALID_ARGUMENT,
                    where + ": buffer format '" +
                        std::string(view.format ? view.format : "B") +
                        "' (" + std::to_string(view.itemsize) +
                        "-byte items) is not a moe dtype (expected " +
                        moe_dtype_name(info.dtype) + ")");
      if (view.ndim > MOE_MAX_RANK)
        throwStatus(MOE_INVALID_ARGUMENT,
                    where + ": rank " + std::to_string(view.ndim) +
                        " exceeds the runtime's maximum of " +
                        std::to_string(MOE_MAX_RANK));
      t.dtype = static_cast<moe_dtype>(dtype);
      t.rank = view.ndim;
      for (int d = 0; d < view.ndim; ++d)
        t.shape[d] = view.shape[d];
      t.data = view.buf;
    }
    return tensors;
  }

  /// A tensor the package describes itself, for memory without the buffer
  /// protocol (torch tensors): a tuple (data address, shape, moe dtype,
  /// owner) whose owner keeps the memory alive; the caller guarantees a
  /// dense row-major layout.
  void describeRaw(size_t i, PyObject *raw, moe_tensor &t) const {
    // CPython's API directly: this is on every call with torch tensors.
    PyObject *shape = PyTuple_Size(raw) == 4 ? PyTuple_GET_ITEM(raw, 1) : nullptr;
    if (!shape || !PyTuple_Check(shape))
      throwStatus(MOE_INVALID_ARGUMENT,
                  "input " + std::to_string(i) +
                      ": a raw tensor is (address, shape, dtype, owner)");
    Py_ssize_t rank = PyTuple_GET_SIZE(shape);
    if (rank > MOE_MAX_RANK)
      throwStatus(MOE_INVALID_ARGUMENT,
                  "input " + std::to_string(i) + " '" + inputInfo[i].name +
                      "': rank " + std::to_string(rank) +
                      " exceeds the runtime's maximum of " +
                      std::to_string(MOE_MAX_RANK));
    t.rank = static_cast<int32_t>(rank);
    for (Py_ssize_t d = 0; d < rank; ++d)
      t.shape[d] = PyLong_AsLongLong(PyTuple_GET_ITEM(shape, d));
    t.dtype = static_cast<moe_dtype>(PyLong_AsLong(PyTuple_GET_ITEM(raw, 2)));
    t.data = PyLong_AsVoidPtr(PyTuple_GET_ITEM(raw, 0));
    if (PyErr_Occurred())
      throw py::error_already_set();
  }

  std::shared_ptr<ModuleState> state;
  const moe_function *fn;
  int64_t numInputs = 0, numOutputs = 0;
  std::vector<moe_arg_info> inputInfo;
  // Shared by the copies of this Function (pybind11 copies it around).
  std::shared_ptr<ShapeCache> shapeCache = std::make_shared<ShapeCache>();
};

class Module {
public:
  explicit Module(const std::string &path) : state(new ModuleState) {
    check(moe_module_load(path.c_str(), &state->module));
  }

  std::string target() const { return moe_module_target(state->module); }
  std::string manifest() const {
    return moe_module_manifest_json(state->module);
  }
  std::string path() const { return moe_module_path(state->module); }

  std::vector<Function> functions() const {
    std::vector<Function> list;
    int64_t n = moe_module_function_count(state->module);
    for (int64_t i = 0; i < n; ++i)
      list.emplace_back(state, moe_module_function(state->module, i));
    return list;
  }

  Function function(const std::string &name) const {
    const moe_function *fn = nullptr;
    check(moe_module_find_function(state->module, name.c_str(), &fn));
    return Function(state, fn);
  }

private:
  std::shared_ptr<ModuleState> state;
};

//===----------------------------------------------------------------------===//
// Expert parallelism: libmoe_runtime_mpi.so, loaded on demand
//===----------------------------------------------------------------------===//

/// The functions of moe/runtime_mpi.h that a launcher needs. The library is
/// opened with dlopen so that the extension loads on machines without MPI
/// (as moe-run does); RTLD_GLOBAL because Open MPI's plugins resolve libmpi's
/// symbols globally.
struct MpiLibrary {
  int (*init)(int *, char ***, const char *, double, char *, size_t) = nullptr;
  void (*finalize)() = nullptr;
  int64_t (*rank)() = nullptr;
  int64_t (*size)() = nullptr;
  const moe_communicator *(*communicator)() = nullptr;
  bool initialized = false;
};

MpiLibrary &mpiLibrary() {
  static MpiLibrary lib;
  return lib;
}

/// Loads the library at `path`, initialises MPI (or joins the MPI that
/// mpi4py initialised, which must provide MPI_THREAD_MULTIPLE) and installs
/// its communicator. Returns (rank, size).
py::tuple mpiInit(const std::string &path, double timeout) {
  MpiLibrary &lib = mpiLibrary();
  if (!lib.initialized) {
    void *handle = dlopen(path.c_str(), RTLD_NOW | RTLD_GLOBAL);
    if (!handle) {
      const char *err = dlerror();
      throwStatus(MOE_UNAVAILABLE, "cannot load the MPI support library " +
                                       path + ": " +
                                       (err ? err : "unknown error"));
    }
    auto sym = [&](auto &fnPtr, const char *name) {
      void *p = dlsym(handle, name);
      if (!p)
        throwStatus(MOE_UNAVAILABLE, path + " lacks " + name);
      fnPtr = reinterpret_cast<std::remove_reference_t<decltype(fnPtr)>>(p);
    };
    MpiLibrary loaded;
    sym(loaded.init, "moe_mpi_init");
    sym(loaded.finalize, "moe_mpi_finalize");
    sym(loaded.rank, "moe_mpi_rank");
    sym(loaded.size, "moe_mpi_size");
    sym(loaded.communicator, "moe_mpi_communicator");
    char error[512] = "";
    if (loaded.init(nullptr, nullptr, "moe_mlir", timeout, error,
                    sizeof error) != 0)
      throwStatus(MOE_UNAVAILABLE,
                  std::string("cannot initialise MPI: ") + error);
    loaded.initialized = true;
    lib = loaded;
  }
  check(moe_set_communicator(lib.communicator()));
  return py::make_tuple(lib.rank(), lib.size());
}

/// Removes the communicator and stops the library's communication thread;
/// MPI itself is finalised by whoever initialised it (mpi4py).
void mpiFinalize() {
  MpiLibrary &lib = mpiLibrary();
  if (!lib.initialized)
    return;
  moe_set_communicator(nullptr);
  lib.finalize();
  lib.initialized = false;
}

/// A group of one process: an expert-parallel module compiled for one rank
/// runs without MPI.
void installSelfCommunicator() {
  check(moe_set_communicator(moe_self_communicator()));
}

py::tuple partitionRange(int64_t n, int64_t parts, int64_t index) {
  int64_t begin = 0, end = 0;
  check(moe_partition_range(n, parts, index, &begin, &end));
  return py::make_tuple(begin, end);
}

} // namespace

PYBIND11_MODULE(_runtime, m) {
  m.doc() = "Binding of the moe-mlir runtime's C API (moe/runtime.h); use "
            "the moe_mlir package rather than this module.";

  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p)
        std::rethrow_exception(p);
    } catch (const StatusError &e) {
      raiseStatus(e);
    }
  });

  py::class_<Function>(m, "Function")
      .def_property_readonly("name", &Function::name)
      .def_property_readonly("inputs",
                             [](const Function &f) { return f.args(true); })
      .def_property_readonly("outputs",
                             [](const Function &f) { return f.args(false); })
      .def_property_readonly("reference_json", &Function::referenceJson)
      .def_property_readonly("expert_parallel", &Function::expertParallel)
      .def("invoke", &Function::invoke, py::arg("arguments"))
      .def("output_shapes", &Function::outputShapes, py::arg("arguments"))
      .def("benchmark", &Function::benchmark, py::arg("arguments"),
           py::arg("warmup"), py::arg("iterations"))
      .def("time_c_invoke", &Function::timeCInvoke, py::arg("arguments"),
           py::arg("iterations"));

  py::class_<Module>(m, "Module")
      .def(py::init<const std::string &>(), py::arg("path"))
      .def_property_readonly("target", &Module::target)
      .def_property_readonly("manifest", &Module::manifest)
      .def_property_readonly("path", &Module::path)
      .def_property_readonly("functions", &Module::functions)
      .def("function", &Module::function, py::arg("name"));

  m.def("routing_profile_start", &moe_routing_profile_start);
  m.def("routing_profile_stop", &moe_routing_profile_stop);
  m.def("routing_profile_records", &moe_routing_profile_records);
  m.def(
      "routing_profile_write",
      [](const std::string &path, bool merge) {
        check(moe_routing_profile_write(path.c_str(), merge ? 1 : 0));
      },
      py::arg("path"), py::arg("merge"));
  m.def(
      "expert_cache_configure",
      [](int64_t memoryLimit, int readAhead) {
        check(moe_expert_cache_configure(
            memoryLimit, static_cast<moe_read_ahead>(readAhead)));
      },
      py::arg("memory_limit"), py::arg("read_ahead"));
  m.def("expert_cache_stats", [] {
    moe_expert_cache_stats s{};
    moe_expert_cache_get_stats(&s);
    py::dict d;
    d["used"] = s.used;
    d["used_bytes"] = s.used_bytes;
    d["used_predicted"] = s.used_predicted;
    d["predicted"] = s.predicted;
    d["read_ahead_bytes"] = s.read_ahead_bytes;
    d["evictions"] = s.evictions;
    d["evicted_bytes"] = s.evicted_bytes;
    d["resident_bytes"] = s.resident_bytes;
    return d;
  });
  m.def("expert_cache_reset_stats", &moe_expert_cache_reset_stats);
  m.def("expert_cache_wait", &moe_expert_cache_wait,
        py::call_guard<py::gil_scoped_release>());
  m.def("set_num_threads", [](int64_t n) { check(moe_set_num_threads(n)); });
  m.def("get_num_threads", &moe_get_num_threads);
  m.def("communicator_size", &moe_communicator_size);
  m.def("partition_range", &partitionRange);
  m.def("mpi_init", &mpiInit, py::arg("library"), py::arg("timeout") = 0.0);
  m.def("mpi_finalize", &mpiFinalize);
  m.def("install_self_communicator", &installSelfCommunicator);
  m.def("remove_communicator",
        [] { check(moe_set_communicator(nullptr)); });
  m.def("runtime_library_path", [] {
    Dl_info info{};
    if (dladdr(reinterpret_cast<void *>(&moe_status_name), &info) &&
        info.dli_fname)
      return std::string(info.dli_fname);
    return std::string();
  });
}
