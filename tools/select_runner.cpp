// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#include "select_runner.h"

#include <chrono>
#include <cstring>

#if defined(PD_CLI_CUDA)
#include <cuda_runtime.h>
#endif

namespace pdcli {

using namespace promptdistill;

bool cuda_backend_built() {
#if defined(PD_CLI_CUDA)
  return true;
#else
  return false;
#endif
}

namespace {

template <class T>
std::vector<T> convert(const std::vector<float>& x) {
  std::vector<T> out(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) out[i] = from_float<T>(x[i]);
  return out;
}

//! Host buffers of one selection, and the arguments over them (or over device mirrors).
template <class T>
struct Problem {
  std::vector<T> q, k;
  std::vector<int32_t> lengths, indices, counts, positions;
  std::vector<float> scores;
  int64_t rows = 1;

  SelectArgs<T> args(const SelectInput& in, const MethodConfig& cfg, const T* qp, const T* kp, const int32_t* lp,
                     int32_t* ip, int32_t* cp, int32_t* pp, float* sp) const {
    SelectArgs<T> a;
    a.config = cfg;
    a.q = make_view(qp, 1, in.Lq, in.H, in.D);
    a.k = KvCacheView<const T>::contiguous_bshd(kp, 1, in.L, in.Hkv, in.D);
    a.lengths = lp;
    a.max_length = in.L;
    a.indices = make_view(ip, 1, rows, in.L);
    a.counts = make_view(cp, 1, rows);
    a.positions = make_view(pp, 1, rows, in.L);
    a.final_scores = make_view(sp, 1, rows, in.L);
    return a;
  }
};

#if defined(PD_CLI_CUDA)
struct DeviceAllocs {
  std::vector<void*> ptrs;
  ~DeviceAllocs() {
    for (void* p : ptrs) cudaFree(p);
  }
  template <class T>
  Status upload(const std::vector<T>& host, T** out) {
    void* p = nullptr;
    const std::size_t bytes = std::max<std::size_t>(1, host.size() * sizeof(T));
    if (cudaMalloc(&p, bytes) != cudaSuccess) return Status(StatusCode::kOutOfMemory, "cudaMalloc of %zu bytes failed", bytes);
    ptrs.push_back(p);
    if (!host.empty() && cudaMemcpy(p, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice) != cudaSuccess)
      return Status(StatusCode::kCudaError, "host-to-device copy failed");
    *out = static_cast<T*>(p);
    return Status::ok();
  }
};
template <class T>
Status download(std::vector<T>* host, const T* dev) {
  if (host->empty()) return Status::ok();
  return cudaMemcpy(host->data(), dev, host->size() * sizeof(T), cudaMemcpyDeviceToHost) == cudaSuccess
             ? Status::ok()
             : Status(StatusCode::kCudaError, "device-to-host copy failed");
}
#endif

template <class T>
Status run_typed(const SelectInput& in, const MethodConfig& cfg, const std::string& backend, SelectOutput* out) {
  Problem<T> p;
  p.q = convert<T>(in.q);
  p.k = convert<T>(in.k);
  p.rows = score_rows(cfg.method, cfg.grouping, in.H, in.Hkv);
  p.lengths = {int32_t(in.L)};
  p.indices.assign(std::size_t(p.rows * in.L), -1);
  p.counts.assign(std::size_t(p.rows), 0);
  p.positions.assign(std::size_t(p.rows * in.L), -1);
  p.scores.assign(std::size_t(p.rows * in.L), 0.0f);
  if (backend == "cpu") {
    auto a = p.args(in, cfg, p.q.data(), p.k.data(), p.lengths.data(), p.indices.data(), p.counts.data(),
                    p.positions.data(), p.scores.data());
    PD_RETURN_IF_ERROR(ref::Select<T>::can_implement(a));
    HostWorkspace ws;
    PD_RETURN_IF_ERROR(ws.reserve(ref::Select<T>::workspace_size(a)));
    const auto t0 = std::chrono::steady_clock::now();
    PD_RETURN_IF_ERROR(ref::Select<T>::run(a, ws.workspace()));
    out->milliseconds = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  } else {
#if defined(PD_CLI_CUDA)
    if (!cuda::device_available()) return Status(StatusCode::kNoDevice, "--backend cuda: no CUDA device is available");
    DeviceAllocs d;
    T *q = nullptr, *k = nullptr;
    int32_t *l = nullptr, *ix = nullptr, *c = nullptr, *pos = nullptr;
    float* sc = nullptr;
    PD_RETURN_IF_ERROR(d.upload(p.q, &q));
    PD_RETURN_IF_ERROR(d.upload(p.k, &k));
    PD_RETURN_IF_ERROR(d.upload(p.lengths, &l));
    PD_RETURN_IF_ERROR(d.upload(p.indices, &ix));
    PD_RETURN_IF_ERROR(d.upload(p.counts, &c));
    PD_RETURN_IF_ERROR(d.upload(p.positions, &pos));
    PD_RETURN_IF_ERROR(d.upload(p.scores, &sc));
    auto a = p.args(in, cfg, q, k, l, ix, c, pos, sc);
    PD_RETURN_IF_ERROR(cuda::Select<T>::can_implement(a));
    std::vector<unsigned char> zero(cuda::Select<T>::workspace_size(a));
    unsigned char* ws = nullptr;
    PD_RETURN_IF_ERROR(d.upload(zero, &ws));
    const Workspace workspace{ws, zero.size()};
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    cudaEventRecord(e0, nullptr);
    PD_RETURN_IF_ERROR(cuda::Select<T>::run(a, workspace, nullptr));
    cudaEventRecord(e1, nullptr);
    PD_RETURN_IF_ERROR(cuda::read_device_status(workspace, nullptr));
    float ms = 0;
    cudaEventElapsedTime(&ms, e0, e1);
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    out->milliseconds = ms;
    PD_RETURN_IF_ERROR(download(&p.indices, ix));
    PD_RETURN_IF_ERROR(download(&p.counts, c));
    PD_RETURN_IF_ERROR(download(&p.positions, pos));
    PD_RETURN_IF_ERROR(download(&p.scores, sc));
#else
    return Status(StatusCode::kUnsupported, "--backend cuda: this build has no CUDA backend");
#endif
  }
  out->rows = p.rows;
  out->indices.assign(std::size_t(p.rows), {});
  out->positions.assign(std::size_t(p.rows), {});
  for (int64_t r = 0; r < p.rows; ++r) {
    const auto begin = std::size_t(r * in.L), n = std::size_t(p.counts[std::size_t(r)]);
    out->indices[std::size_t(r)].assign(p.indices.begin() + long(begin), p.indices.begin() + long(begin + n));
    out->positions[std::size_t(r)].assign(p.positions.begin() + long(begin), p.positions.begin() + long(begin + n));
  }
  out->scores.assign(p.scores.begin(), p.scores.begin() + long(in.L));
  return Status::ok();
}

}  // namespace

Status run_select(const SelectInput& in, const MethodConfig& cfg, const std::string& backend, const std::string& dtype,
                  SelectOutput* out) {
  if (backend != "cpu" && backend != "cuda")
    return Status(StatusCode::kInvalidArgument, "--backend must be cpu or cuda, got '%s'", Quoted(backend, 40).c_str());
  if (dtype == "f32") return run_typed<float>(in, cfg, backend, out);
  if (dtype == "f16") return run_typed<f16>(in, cfg, backend, out);
  if (dtype == "bf16") return run_typed<bf16>(in, cfg, backend, out);
  return Status(StatusCode::kInvalidArgument, "--dtype must be f32, f16 or bf16, got '%s'", Quoted(dtype, 40).c_str());
}

}  // namespace pdcli
