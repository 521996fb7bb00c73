// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#include "select_runner.h"

#include <chrono>
#include <cstring>

#include "promptdistill/backend.h"

namespace pdcli {

using namespace promptdistill;

bool cuda_backend_built() { return backend_built("cuda"); }

namespace {

template <class T>
std::vector<T> convert(const std::vector<float>& x) {
  std::vector<T> out(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) out[i] = from_float<T>(x[i]);
  return out;
}

//! Buffers of backend B (host or device memory), released at the end of a run.
template <class B>
struct BackendBuffers {
  std::vector<void*> ptrs;
  ~BackendBuffers() {
    for (void* p : ptrs) B::release(p, nullptr);
  }
  template <class T>
  Status upload(const std::vector<T>& host, T** out) {
    void* p = nullptr;
    PD_RETURN_IF_ERROR(B::allocate(host.size() * sizeof(T), &p, nullptr));
    ptrs.push_back(p);
    if (!host.empty())
      PD_RETURN_IF_ERROR(B::upload(p, host.data(), host.size() * sizeof(T), nullptr));
    *out = static_cast<T*>(p);
    return Status::ok();
  }
  template <class T>
  static Status download(std::vector<T>* host, const T* from) {
    return host->empty() ? Status::ok()
                         : B::download(host->data(), from, host->size() * sizeof(T), nullptr);
  }
};

//! One selection on backend B: the inputs are uploaded where B keeps its arrays, Select runs
//! there, and the outputs come back (the time is Select's run and the wait for it).
template <class B, class T>
Status run_on(const SelectInput& in, const MethodConfig& cfg, SelectOutput* out) {
  const int64_t rows = score_rows(cfg.method, cfg.grouping, in.H, in.Hkv);
  std::vector<int32_t> lengths{int32_t(in.L)}, indices(std::size_t(rows * in.L), -1),
      counts(std::size_t(rows), 0), positions(std::size_t(rows * in.L), -1);
  std::vector<float> scores(std::size_t(rows * in.L), 0.0f);
  BackendBuffers<B> d;
  T *q = nullptr, *k = nullptr;
  int32_t *l = nullptr, *ix = nullptr, *c = nullptr, *pos = nullptr;
  float* sc = nullptr;
  PD_RETURN_IF_ERROR(d.upload(convert<T>(in.q), &q));
  PD_RETURN_IF_ERROR(d.upload(convert<T>(in.k), &k));
  PD_RETURN_IF_ERROR(d.upload(lengths, &l));
  PD_RETURN_IF_ERROR(d.upload(indices, &ix));
  PD_RETURN_IF_ERROR(d.upload(counts, &c));
  PD_RETURN_IF_ERROR(d.upload(positions, &pos));
  PD_RETURN_IF_ERROR(d.upload(scores, &sc));
  SelectArgs<T> a;
  a.config = cfg;
  a.q = make_view<const T>(q, 1, in.Lq, in.H, in.D);
  a.k = KvCacheView<const T>::contiguous_bshd(k, 1, in.L, in.Hkv, in.D);
  a.lengths = l;
  a.max_length = in.L;
  a.indices = make_view(ix, 1, rows, in.L);
  a.counts = make_view(c, 1, rows);
  a.positions = make_view(pos, 1, rows, in.L);
  a.final_scores = make_view(sc, 1, rows, in.L);
  using Select = typename B::template Select<T>;
  PD_RETURN_IF_ERROR(Select::can_implement(a));
  unsigned char* ws = nullptr;
  PD_RETURN_IF_ERROR(d.upload(std::vector<unsigned char>(Select::workspace_size(a)), &ws));
  const Workspace workspace{ws, Select::workspace_size(a)};
  const auto t0 = std::chrono::steady_clock::now();
  PD_RETURN_IF_ERROR(Select::run(a, workspace, nullptr));
  PD_RETURN_IF_ERROR(B::device_status(workspace, nullptr));  // waits for the run on a device
  out->milliseconds =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  PD_RETURN_IF_ERROR(d.download(&indices, ix));
  PD_RETURN_IF_ERROR(d.download(&counts, c));
  PD_RETURN_IF_ERROR(d.download(&positions, pos));
  PD_RETURN_IF_ERROR(d.download(&scores, sc));
  out->rows = rows;
  out->indices.assign(std::size_t(rows), {});
  out->positions.assign(std::size_t(rows), {});
  for (int64_t r = 0; r < rows; ++r) {
    const auto begin = std::size_t(r * in.L), n = std::size_t(counts[std::size_t(r)]);
    out->indices[std::size_t(r)].assign(indices.begin() + long(begin),
                                        indices.begin() + long(begin + n));
    out->positions[std::size_t(r)].assign(positions.begin() + long(begin),
                                          positions.begin() + long(begin + n));
  }
  out->scores.assign(scores.begin(), scores.begin() + long(in.L));
  return Status::ok();
}

}  // namespace

Status run_select(const SelectInput& in, const MethodConfig& cfg, const std::string& backend,
                  const std::string& dtype, SelectOutput* out) {
  if (dtype != "f32" && dtype != "f16" && dtype != "bf16")
    return Status(StatusCode::kInvalidArgument, "--dtype must be f32, f16 or bf16, got '%s'",
                  Quoted(dtype, 40).c_str());
  return with_backend(backend, [&](auto device) -> Status {
    using B = decltype(device);
    if (dtype == "f16") return run_on<B, f16>(in, cfg, out);
    if (dtype == "bf16") return run_on<B, bf16>(in, cfg, out);
    return run_on<B, float>(in, cfg, out);
  });
}

}  // namespace pdcli
