//===- Invocation.cpp - calling a module function on host tensors ---------===//

#include "moe-mlir/Tooling/Invocation.h"

#include "moe-mlir/Tooling/Diagnostics.h"

#include <cstring>

namespace moe::tooling {

std::vector<moe_arg_info> functionArgs(const moe_function *fn, bool inputs) {
  std::vector<moe_arg_info> out;
  int64_t n = inputs ? moe_function_input_count(fn)
                     : moe_function_output_count(fn);
  for (int64_t i = 0; i < n; ++i) {
    moe_arg_info a;
    check(inputs ? moe_function_input(fn, i, &a)
                 : moe_function_output(fn, i, &a));
    out.push_back(a);
  }
  return out;
}

std::string argString(const moe_arg_info &a) {
  std::string s = std::string(moe_dtype_name(a.dtype)) + "[";
  for (int32_t d = 0; d < a.rank; ++d)
    s += (d ? ", " : "") +
         (a.dims[d] ? std::string(a.dims[d]) : std::to_string(a.shape[d]));
  return s + "]";
}

std::vector<moe_tensor> views(const std::vector<HostTensor> &ts) {
  std::vector<moe_tensor> v;
  for (const HostTensor &t : ts)
    v.push_back(t.view());
  return v;
}

std::vector<HostTensor> allocateOutputs(const moe_function *fn,
                                        const std::vector<HostTensor> &inputs,
                                        size_t count) {
  std::vector<moe_tensor> inViews = views(inputs);
  std::vector<moe_tensor> shapes(count);
  check(moe_function_output_shapes(
      fn, inViews.data(), static_cast<int64_t>(inViews.size()), shapes.data(),
      static_cast<int64_t>(shapes.size())));
  std::vector<HostTensor> outputs;
  for (const moe_tensor &s : shapes) {
    HostTensor t = HostTensor::allocate(
        s.dtype, std::vector<int64_t>(s.shape, s.shape + s.rank));
    std::memset(t.data.get(), 0xFF, t.bytes);
    outputs.push_back(std::move(t));
  }
  return outputs;
}

void invoke(const moe_function *fn, const std::vector<HostTensor> &inputs,
            std::vector<HostTensor> &outputs) {
  std::vector<moe_tensor> in = views(inputs), out = views(outputs);
  check(moe_invoke(fn, in.data(), static_cast<int64_t>(in.size()), out.data(),
                   static_cast<int64_t>(out.size())));
}

} // namespace moe::tooling
