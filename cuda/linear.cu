// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
//! Linear layers on cuBLASLt (Tier C): y = x W^T (+ bias) (+ residual), f32 accumulation.
//!
//! Row-major y[n, out] = x[n, in] W[out, in]^T is, in cuBLASLt's column-major terms,
//! D[out, n] = op_T(A = W as [in, out]) * B (x as [in, n]) + beta * C: the "TN" problem Hopper's
//! kernels like best. The plan owns the handle and every descriptor (RAII), pins the algorithm
//! the heuristic returns once at creation (so every run of a shape uses the same kernel and the
//! same reduction order), and declares 16-byte minimum alignment so that the pinned algorithm
//! is valid for any pointer `check_linear` accepts. Residual: C = residual with beta = 1 (C may
//! be D: in-place residual add). Bias: the BIAS epilogue.
//!
//! A plan's descriptor carries the bias pointer, set on each run: one plan must not run from two
//! host threads at once (create one plan per thread instead; they are cheap).

#include <cublasLt.h>

#include <type_traits>

#include "cuda/cublaslt_status.h"
#include "promptdistill/blocks.h"
#include "promptdistill/cuda/check.cuh"
#include "promptdistill/detail/block_checks.h"

namespace promptdistill {
namespace cuda {
namespace {

constexpr std::size_t kMaxGemmWorkspace = std::size_t(32) << 20;  // what Hopper kernels may ask for

template <class T>
constexpr cudaDataType_t data_type();
template <>
constexpr cudaDataType_t data_type<float>() {
  return CUDA_R_32F;
}
template <>
constexpr cudaDataType_t data_type<f16>() {
  return CUDA_R_16F;
}
template <>
constexpr cudaDataType_t data_type<bf16>() {
  return CUDA_R_16BF;
}

}  // namespace

template <class T>
struct LinearPlan<T>::State {
  cublasLtHandle_t handle = nullptr;
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulPreference_t preference = nullptr;
  cublasLtMatmulAlgo_t algo{};
  std::size_t workspace = 0;
  ~State() {
    if (preference) cublasLtMatmulPreferenceDestroy(preference);
    if (c) cublasLtMatrixLayoutDestroy(c);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (op) cublasLtMatmulDescDestroy(op);
    if (handle) cublasLtDestroy(handle);
  }
};

template <class T>
LinearPlan<T>::LinearPlan() noexcept = default;
template <class T>
LinearPlan<T>::~LinearPlan() = default;
template <class T>
LinearPlan<T>::LinearPlan(LinearPlan&&) noexcept = default;
template <class T>
LinearPlan<T>& LinearPlan<T>::operator=(LinearPlan&&) noexcept = default;

template <class T>
Status LinearPlan<T>::create(const LinearShape& shape, LinearPlan* plan) noexcept {
  PD_RETURN_IF_ERROR(promptdistill::detail::check_linear_shape(shape));
  std::unique_ptr<State> st(new (std::nothrow) State);
  if (!st) return Status(StatusCode::kOutOfMemory, "linear plan: out of host memory");
  if (shape.rows > 0) {
    const uint64_t ldx = uint64_t(shape.x_row_stride ? shape.x_row_stride : shape.in);
    const uint64_t ldw = uint64_t(shape.w_row_stride ? shape.w_row_stride : shape.in);
    const uint64_t ldy = uint64_t(shape.y_row_stride ? shape.y_row_stride : shape.out);
    const cudaDataType_t type = data_type<T>();
    PD_CUBLAS_TRY(cublasLtCreate(&st->handle));
    PD_CUBLAS_TRY(cublasLtMatmulDescCreate(&st->op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    const cublasOperation_t trans_a = CUBLAS_OP_T, trans_b = CUBLAS_OP_N;
    PD_CUBLAS_TRY(cublasLtMatmulDescSetAttribute(st->op, CUBLASLT_MATMUL_DESC_TRANSA, &trans_a,
                                                 sizeof trans_a));
    PD_CUBLAS_TRY(cublasLtMatmulDescSetAttribute(st->op, CUBLASLT_MATMUL_DESC_TRANSB, &trans_b,
                                                 sizeof trans_b));
    if (shape.bias) {
      const cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_BIAS;
      PD_CUBLAS_TRY(cublasLtMatmulDescSetAttribute(st->op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue,
                                                   sizeof epilogue));
      PD_CUBLAS_TRY(cublasLtMatmulDescSetAttribute(st->op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE,
                                                   &type, sizeof type));
    }
    PD_CUBLAS_TRY(cublasLtMatrixLayoutCreate(&st->a, type, uint64_t(shape.in), uint64_t(shape.out),
                                             int64_t(ldw)));
    PD_CUBLAS_TRY(cublasLtMatrixLayoutCreate(&st->b, type, uint64_t(shape.in), uint64_t(shape.rows),
                                             int64_t(ldx)));
    PD_CUBLAS_TRY(cublasLtMatrixLayoutCreate(&st->c, type, uint64_t(shape.out),
                                             uint64_t(shape.rows), int64_t(ldy)));
    PD_CUBLAS_TRY(cublasLtMatmulPreferenceCreate(&st->preference));
    PD_CUBLAS_TRY(cublasLtMatmulPreferenceSetAttribute(
        st->preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &kMaxGemmWorkspace,
        sizeof kMaxGemmWorkspace));
    const uint32_t alignment = 16;
    for (const auto attr :
         {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
          CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES})
      PD_CUBLAS_TRY(
          cublasLtMatmulPreferenceSetAttribute(st->preference, attr, &alignment, sizeof alignment));
    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    const cublasStatus_t heuristic = cublasLtMatmulAlgoGetHeuristic(
        st->handle, st->op, st->a, st->b, st->c, st->c, st->preference, 1, &result, &found);
    PD_RETURN_IF_ERROR(
        detail::heuristic_status(heuristic, found, result.state, shape.rows, shape.in, shape.out));
    st->algo = result.algo;
    st->workspace = result.workspaceSize;
  }
  plan->shape_ = shape;
  plan->state_ = std::move(st);
  return Status::ok();
}

template <class T>
Status LinearPlan<T>::can_implement(const LinearArgs<T>& a) const noexcept {
  if (!state_) return Status(StatusCode::kInvalidArgument, "linear: the plan was not created");
  return promptdistill::detail::check_linear(shape_, a);
}

template <class T>
std::size_t LinearPlan<T>::workspace_size() const noexcept {
  return state_ ? WorkspacePlanner::round_up(state_->workspace) : 0;
}

template <class T>
Status LinearPlan<T>::run(const LinearArgs<T>& a, Workspace ws, Stream stream) const noexcept {
  PD_RETURN_IF_ERROR(can_implement(a));
  if (shape_.rows == 0) return Status::ok();
  WorkspacePlanner planner(ws);
  void* scratch = planner.take<unsigned char>(state_->workspace);
  PD_RETURN_IF_ERROR(planner.status());
  if (shape_.bias) {
    const void* bias = a.bias.data;
    PD_CUBLAS_TRY(cublasLtMatmulDescSetAttribute(state_->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                 &bias, sizeof bias));
  }
  const float alpha = 1.0f, beta = shape_.residual ? 1.0f : 0.0f;
  const void* c = shape_.residual ? static_cast<const void*>(a.residual.data)
                                  : static_cast<const void*>(a.y.data);
  PD_CUBLAS_TRY(cublasLtMatmul(state_->handle, state_->op, &alpha, a.w.data, state_->a, a.x.data,
                               state_->b, &beta, c, state_->c, a.y.data, state_->c, &state_->algo,
                               state_->workspace ? scratch : nullptr, state_->workspace, stream));
  return Status::ok();
}

template class LinearPlan<float>;
template class LinearPlan<f16>;
template class LinearPlan<bf16>;

}  // namespace cuda
}  // namespace promptdistill
