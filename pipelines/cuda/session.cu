// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
//! The CUDA backend of BatchSession (device memory, the caller's stream) and its instantiations,
//! `cuda::BatchSession` (bf16), `cuda::BatchSessionF16` and `cuda::BatchSessionF32`. Allocation
//! happens here, in the session, never inside an operation's run().

#include "promptdistill/cuda/check.cuh"
#include "promptdistill/detail/random_weights.h"
#include "pipelines/batch_session/batch_session_impl.h"

namespace promptdistill {
namespace {

__global__ void accumulate_status_kernel(const promptdistill::detail::DeviceStatusWord* word,
                                         promptdistill::detail::DeviceStatusWord* sticky) {
  if (sticky->code == 0 && word->code != 0) *sticky = *word;
}

template <class T>
__global__ void to_f32_kernel(const T* src, float* dst, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = num::to_f32(src[i]);
}

template <class T>
__global__ void fill_random_kernel(T* dst, int64_t n, float scale, uint64_t seed) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = num::from_f32<T>(detail::random_weight(uint64_t(i), seed, scale));
}

}  // namespace

Status CudaBackend::allocate(std::size_t bytes, void** out, Stream s) noexcept {
  // Stream-ordered: a cudaFree would synchronise the whole device on every cache re-allocation.
  const cudaError_t e = cudaMallocAsync(out, bytes < 1 ? 1 : bytes, s);
  if (e != cudaSuccess) {
    cudaGetLastError();  // clear the allocation error (it is not sticky)
    *out = nullptr;
    return Status(StatusCode::kOutOfMemory,
                  "cuda session: cannot allocate %zu bytes of device memory (%s)", bytes,
                  cudaGetErrorString(e));
  }
  return Status::ok();
}
void CudaBackend::release(void* p, Stream s) noexcept { cudaFreeAsync(p, s); }
Status CudaBackend::fill_zero(void* p, std::size_t bytes, Stream s) noexcept {
  PD_CUDA_TRY(cudaMemsetAsync(p, 0, bytes, s));
  return Status::ok();
}
Status CudaBackend::upload(void* dst, const void* src, std::size_t bytes, Stream s) noexcept {
  // Pageable host memory: the copy is staged before the call returns, so `src` may be reused.
  PD_CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, s));
  return Status::ok();
}
Status CudaBackend::download(void* dst, const void* src, std::size_t bytes, Stream s) noexcept {
  PD_CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, s));
  PD_CUDA_TRY(cudaStreamSynchronize(s));
  return Status::ok();
}
Status CudaBackend::copy_rows(void* dst, std::size_t dst_pitch, const void* src,
                              std::size_t src_pitch, std::size_t width, std::size_t rows,
                              Stream s) noexcept {
  if (width == 0 || rows == 0) return Status::ok();
  PD_CUDA_TRY(
      cudaMemcpy2DAsync(dst, dst_pitch, src, src_pitch, width, rows, cudaMemcpyDeviceToDevice, s));
  return Status::ok();
}
template <class T>
Status CudaBackend::to_f32(const T* src, float* dst, int64_t n, Stream s) noexcept {
  if (n == 0) return Status::ok();
  to_f32_kernel<T><<<cuda::detail::blocks_for(n, 256), 256, 0, s>>>(src, dst, n);
  PD_CUDA_CHECK_LAUNCH(s);
  return Status::ok();
}
template Status CudaBackend::to_f32<float>(const float*, float*, int64_t, Stream) noexcept;
template Status CudaBackend::to_f32<bf16>(const bf16*, float*, int64_t, Stream) noexcept;
template Status CudaBackend::to_f32<f16>(const f16*, float*, int64_t, Stream) noexcept;
template <class T>
Status CudaBackend::fill_random(T* dst, int64_t n, float scale, uint64_t seed, Stream s) noexcept {
  if (n == 0) return Status::ok();
  fill_random_kernel<T><<<cuda::detail::blocks_for(n, 256), 256, 0, s>>>(dst, n, scale, seed);
  PD_CUDA_CHECK_LAUNCH(s);
  return Status::ok();
}
template Status CudaBackend::fill_random<float>(float*, int64_t, float, uint64_t, Stream) noexcept;
template Status CudaBackend::fill_random<bf16>(bf16*, int64_t, float, uint64_t, Stream) noexcept;
template Status CudaBackend::fill_random<f16>(f16*, int64_t, float, uint64_t, Stream) noexcept;
Status CudaBackend::allocate_host(std::size_t bytes, void** out) noexcept {
  // Pinned: an upload from it is a DMA transfer ordered on the stream, never a staged copy that
  // may wait for the stream first (as one from pageable memory may).
  const cudaError_t e = cudaMallocHost(out, bytes < 1 ? 1 : bytes);
  if (e != cudaSuccess) {
    cudaGetLastError();
    *out = nullptr;
    return Status(StatusCode::kOutOfMemory,
                  "cuda session: cannot allocate %zu bytes of pinned host memory (%s)", bytes,
                  cudaGetErrorString(e));
  }
  return Status::ok();
}
void CudaBackend::release_host(void* p) noexcept { cudaFreeHost(p); }
Status CudaBackend::record_graph(Stream s, const std::function<Status(Stream)>& body,
                                 std::shared_ptr<void>* graph) noexcept {
  (void)s;  // the graph is launched on it later; the legacy default stream cannot be captured
  cudaStream_t capture = nullptr;
  PD_CUDA_TRY(cudaStreamCreateWithFlags(&capture, cudaStreamNonBlocking));
  // Thread-local mode: a call of this thread that could synchronise (an allocation, a blocking
  // copy) fails the capture instead of being recorded wrongly.
  cudaError_t e = cudaStreamBeginCapture(capture, cudaStreamCaptureModeThreadLocal);
  if (e != cudaSuccess) {
    cudaStreamDestroy(capture);
    cudaGetLastError();
    return Status(StatusCode::kCudaError, "cudaStreamBeginCapture: %s", cudaGetErrorString(e));
  }
  Status recorded = Status::ok();
  try {
    recorded = body(capture);
  } catch (const std::bad_alloc&) {
    recorded = Status(StatusCode::kOutOfMemory, "record_graph: out of host memory");
  }
  cudaGraph_t captured = nullptr;
  e = cudaStreamEndCapture(capture, &captured);
  cudaStreamDestroy(capture);
  if (!recorded.is_ok() || e != cudaSuccess) {
    if (captured != nullptr) cudaGraphDestroy(captured);
    cudaGetLastError();
    return recorded.is_ok()
               ? Status(StatusCode::kCudaError, "cudaStreamEndCapture: %s", cudaGetErrorString(e))
               : recorded;
  }
  cudaGraphExec_t exec = nullptr;
  e = cudaGraphInstantiate(&exec, captured, 0);
  cudaGraphDestroy(captured);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return Status(StatusCode::kCudaError, "cudaGraphInstantiate: %s", cudaGetErrorString(e));
  }
  try {
    *graph = std::shared_ptr<void>(
        exec, [](void* p) { cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(p)); });
  } catch (const std::bad_alloc&) {
    cudaGraphExecDestroy(exec);
    return Status(StatusCode::kOutOfMemory, "record_graph: out of host memory");
  }
  return Status::ok();
}
Status CudaBackend::launch_graph(const std::shared_ptr<void>& graph, Stream s) noexcept {
  if (!graph) return Status(StatusCode::kInvalidArgument, "launch_graph: nothing was recorded");
  PD_CUDA_TRY(cudaGraphLaunch(static_cast<cudaGraphExec_t>(graph.get()), s));
  return Status::ok();
}
Status CudaBackend::device_status(Workspace workspace, Stream s) noexcept {
  return cuda::read_device_status(workspace, s);
}
Status CudaBackend::accumulate_status(Workspace workspace, void* sticky, Stream s) noexcept {
  if (workspace.ptr == nullptr || workspace.bytes < sizeof(promptdistill::detail::DeviceStatusWord))
    return Status(StatusCode::kInvalidArgument,
                  "accumulate_status: the workspace holds no status word");
  accumulate_status_kernel<<<1, 1, 0, s>>>(
      static_cast<const promptdistill::detail::DeviceStatusWord*>(workspace.ptr),
      static_cast<promptdistill::detail::DeviceStatusWord*>(sticky));
  PD_CUDA_CHECK_LAUNCH(s);
  return Status::ok();
}
int64_t CudaBackend::available_bytes() noexcept {
  std::size_t free_bytes = 0, total = 0;
  if (cudaMemGetInfo(&free_bytes, &total) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return int64_t(free_bytes);
}

template class BatchSession<CudaBackend, bf16>;
template class BatchSession<CudaBackend, f16>;
template class BatchSession<CudaBackend, float>;

}  // namespace promptdistill
