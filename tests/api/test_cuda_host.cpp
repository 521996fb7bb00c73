// SPDX-License-Identifier: Apache-2.0
// The host side of the CUDA backend, which runs on any machine (GPU or not):
// - every block op's cuda::can_implement agrees with ref::can_implement (one shared check) on
//   valid and invalid arguments;
// - cuda::Attention's workspace plan: the status word alone for the exact and flash kernels, plus
//   the split-KV partials (B x rows x H x splits x (D + 2) floats) for decode rows;
// - without a device, CUDA runs and sessions return a Status (never crash); with one, this test
//   checks nothing device-side (tests/cuda does);
// - the tensor-parallel ScorePartial and FinishSelect accept and refuse what the reference does,
//   and refuse batches beyond the grid.
#include <doctest/doctest.h>

#include <vector>

#include "cuda/cublaslt_status.h"
#include "promptdistill/batch_session.h"
#include "promptdistill/blocks.h"
#include "promptdistill/cuda/attention_tiles.h"
#include "promptdistill/selector.h"
#include "support/random_model.h"

using namespace promptdistill;

namespace {

struct AttentionProblem {
  std::vector<bf16> q, k, out;
  std::vector<int32_t> q_lens, kv_lens;
  AttentionArgs<bf16> args;
  AttentionProblem(int64_t B, int64_t n, int64_t H, int64_t Hkv, int64_t D, int64_t cap)
      : q(std::size_t(B * n * H * D)),
        k(std::size_t(B * cap * Hkv * D)),
        out(q.size()),
        q_lens(std::size_t(B), int32_t(n)),
        kv_lens(std::size_t(B), int32_t(cap)) {
    args.q = make_view<const bf16>(q.data(), B, n, H, D);
    args.k = KvCacheView<const bf16>::contiguous_bshd(k.data(), B, cap, Hkv, D);
    args.v = args.k;
    args.q_lens = q_lens.data();
    args.kv_lens = kv_lens.data();
    args.max_kv_len = cap;
    args.out = make_view(out.data(), B, n, H, D);
  }
};

}  // namespace

TEST_CASE("cuda host: block-op checks agree with the reference on valid and invalid arguments") {
  AttentionProblem p(2, 3, 8, 2, 64, 40);
  for (AttentionAlgo algo : {AttentionAlgo::kExact, AttentionAlgo::kFast}) {
    p.args.algo = algo;
    CHECK(cuda::Attention<bf16>::can_implement(p.args).is_ok());
    CHECK(ref::Attention<bf16>::can_implement(p.args).is_ok());
  }
  auto bad = p.args;
  bad.q = make_view<const bf16>(p.q.data(), 2, 3, 6,
                                64);  // 6 query heads, out still has 8: shape mismatch
  CHECK(cuda::Attention<bf16>::can_implement(bad).code() ==
        ref::Attention<bf16>::can_implement(bad).code());
  CHECK(!cuda::Attention<bf16>::can_implement(bad).is_ok());
  bad = p.args;
  bad.max_kv_len = -1;
  CHECK(cuda::Attention<bf16>::can_implement(bad).code() == StatusCode::kInvalidArgument);
  bad = p.args;
  bad.k.head_dim = 60;
  CHECK(cuda::Attention<bf16>::can_implement(bad).code() ==
        ref::Attention<bf16>::can_implement(bad).code());

  std::vector<float> x(64 * 32), w(32), y(64 * 32);
  RmsNormArgs<float> n;
  n.x = make_view<const float>(x.data(), 64, 32);
  n.weight = make_view<const float>(w.data(), 32);
  n.out = make_view(y.data(), 64, 32);
  CHECK(cuda::RmsNorm<float>::can_implement(n).is_ok());
  n.weight = make_view<const float>(w.data(), 31);
  CHECK(cuda::RmsNorm<float>::can_implement(n).code() == StatusCode::kShapeMismatch);
  CHECK(ref::RmsNorm<float>::can_implement(n).code() == StatusCode::kShapeMismatch);
  n.weight = make_view<const float>(w.data(), 32);
  n.out = make_view(x.data() + 1, 64, 32);  // overlaps x without being x
  CHECK(cuda::RmsNorm<float>::can_implement(n).code() == StatusCode::kInvalidArgument);

  RopeArgs<float> r;
  r.x = make_view(y.data(), 64, 1, 31);  // odd head dim
  r.cos = make_view<const float>(x.data(), 64, 15);
  r.sin = make_view<const float>(x.data(), 64, 15);
  CHECK(cuda::Rope<float>::can_implement(r).code() == ref::Rope<float>::can_implement(r).code());
  CHECK(!cuda::Rope<float>::can_implement(r).is_ok());
}

TEST_CASE("cuda host: the attention workspace holds the split-KV partials only for decode rows") {
  const std::size_t status = cuda::Embed<float>::workspace_size(EmbedArgs<float>{});
  CHECK(status > 0);
  AttentionProblem decode(3, 1, 8, 2, 128, 1300);  // 3 splits of 512 keys
  decode.args.algo = AttentionAlgo::kFast;
  const std::size_t split = cuda::Attention<bf16>::workspace_size(decode.args);
  const std::size_t partial_rows = 3 * 1 * 8 * 3;
  CHECK(split >= status + partial_rows * (128 + 2) * sizeof(float));
  CHECK(split <=
        status + partial_rows * (128 + 2) * sizeof(float) + 3 * WorkspacePlanner::kAlignment);
  decode.args.algo = AttentionAlgo::kExact;
  CHECK(cuda::Attention<bf16>::workspace_size(decode.args) == status);
  AttentionProblem prefill(1, 100, 8, 2, 128, 100);  // flash: the status word only
  prefill.args.algo = AttentionAlgo::kFast;
  CHECK(cuda::Attention<bf16>::workspace_size(prefill.args) == status);
  CHECK(ref::Attention<bf16>::workspace_size(prefill.args) == 0);
}

TEST_CASE("cuda host: without a device, runs and sessions fail with a Status") {
  if (cuda::device_available()) {
    MESSAGE("a CUDA device is present: the device-side behaviour is covered by tests/cuda");
    return;
  }
  std::vector<float> x(8 * 16, 1.0f), w(16, 1.0f), y(x.size());
  RmsNormArgs<float> n;
  n.x = make_view<const float>(x.data(), 8, 16);
  n.weight = make_view<const float>(w.data(), 16);
  n.out = make_view(y.data(), 8, 16);
  const Status s = cuda::RmsNorm<float>::run(n, Workspace{}, nullptr);
  CHECK(s.code() == StatusCode::kCudaError);
  MESSAGE("RmsNorm without a device: " << std::string(s.message()));
  const ModelWeights model = pdtest::random_model(1, 2);
  std::unique_ptr<cuda::BatchSession> session;
  const Status c = cuda::BatchSession::create(&model, BatchSessionOptions{}, nullptr, &session);
  CHECK_FALSE(c.is_ok());
  MESSAGE("cuda::BatchSession::create without a device: " << std::string(c.message()));
  CHECK(CudaBackend::available_bytes() == 0);
}

TEST_CASE("cuda host: K and V of one cache must not be the same buffer (the shared check)") {
  std::vector<float> keys(8 * 2 * 16), values(keys.size());
  std::vector<int32_t> lens = {8}, idx = {0, 3, 5}, counts = {3}, new_lengths = {-1};
  CompactKvArgs<float> c;
  c.k = c.v = KvCacheView<float>::contiguous_bshd(keys.data(), 1, 8, 2, 16);
  c.seq_lens = lens.data();
  c.indices = make_view<const int32_t>(idx.data(), 1, 1, 3);
  c.counts = make_view<const int32_t>(counts.data(), 1, 1);
  c.new_lengths = new_lengths.data();
  CHECK(cuda::CompactKv<float>::can_implement(c).code() == StatusCode::kInvalidArgument);
  CHECK(ref::CompactKv<float>::can_implement(c).code() == StatusCode::kInvalidArgument);
  c.v = KvCacheView<float>::contiguous_bshd(values.data(), 1, 8, 2, 16);
  CHECK(cuda::CompactKv<float>::can_implement(c).is_ok());
}

TEST_CASE("cuda host: scoring launches must fit the grid (batch, heads, batch x KV heads)") {
  // can_implement reads no memory: one small buffer stands behind views of any claimed size.
  alignas(256) static float storage[64];
  static const int32_t lengths[1] = {1};
  auto args = [&](Method m, int64_t B, int64_t rows, int64_t H, int64_t Hkv) {
    ScoreArgs<float> a;
    a.method = m;
    a.q = make_view<const float>(storage, B, rows, H, 64);
    a.k = KvCacheView<const float>::contiguous_bshd(storage, B, 16, Hkv, 64);
    a.lengths = lengths;
    a.scores = make_view(storage, B, score_rows(m, HeadGrouping::kPerKvGroup, H, Hkv), 16);
    return a;
  };
  CHECK(cuda::Score<float>::can_implement(args(Method::kH2O, 100, 16, 8, 4)).is_ok());
  // The group mean's gridDim.y is B x H_kv: 20000 x 4 is over 65535.
  const auto over = args(Method::kH2O, 20000, 16, 8, 4);
  CHECK(ref::Score<float>::can_implement(over).is_ok());
  CHECK(cuda::Score<float>::can_implement(over).code() == StatusCode::kUnsupported);
  CHECK(cuda::Score<float>::can_implement(args(Method::kSnapKV, 20000, 8, 8, 4)).code() ==
        StatusCode::kUnsupported);
  CHECK(cuda::Score<float>::can_implement(args(Method::kPromptDistill, 20000, 1, 8, 4)).is_ok());
  CHECK(cuda::Score<float>::can_implement(args(Method::kPromptDistill, 70000, 1, 8, 4)).code() ==
        StatusCode::kUnsupported);
  CHECK(ref::Score<float>::can_implement(args(Method::kPromptDistill, 70000, 1, 8, 4)).is_ok());
}

TEST_CASE("cuda host: the tensor-parallel operations check like the reference and fit the grid") {
  alignas(256) static float storage[64];
  static const int32_t lengths[1] = {1};
  static int32_t indices[64], counts[64];
  auto partial = [&](Method m, int64_t B, int64_t heads, int64_t offset, int64_t total) {
    ScorePartialArgs<float> a;
    a.method = m;
    a.q = make_view<const float>(storage, B, 1, heads, 64);
    a.k = KvCacheView<const float>::contiguous_bshd(storage, B, 16, 1, 64);
    a.lengths = lengths;
    a.head_offset = offset;
    a.total_heads = total;
    a.partial = make_view(storage, B, 1, 16);
    return a;
  };
  for (const auto& a :
       {partial(Method::kPromptDistill, 2, 4, 4, 8), partial(Method::kGemFilter, 2, 4, 0, 8),
        partial(Method::kSnapKV, 2, 4, 0, 8), partial(Method::kPromptDistill, 2, 4, 2, 8),
        partial(Method::kPromptDistill, 2, 4, 0, 3)})
    CHECK(cuda::ScorePartial<float>::can_implement(a).code() ==
          ref::ScorePartial<float>::can_implement(a).code());
  CHECK(cuda::ScorePartial<float>::can_implement(partial(Method::kPromptDistill, 2, 4, 4, 8))
            .is_ok());
  CHECK(ref::ScorePartial<float>::can_implement(partial(Method::kPromptDistill, 70000, 4, 0, 8))
            .is_ok());
  CHECK(cuda::ScorePartial<float>::can_implement(partial(Method::kPromptDistill, 70000, 4, 0, 8))
            .code() == StatusCode::kUnsupported);

  auto finish = [&](Method m, int64_t B, int64_t total) {
    FinishSelectArgs a;
    a.config.method = m;
    a.config.budget = 40;
    a.summed = make_view<const float>(storage, B, 1, 16);
    a.total_heads = total;
    a.lengths = lengths;
    a.indices = make_view(indices, B, 1, 16);
    a.counts = make_view(counts, B, 1);
    return a;
  };
  for (const auto& a : {finish(Method::kPromptDistill, 2, 8), finish(Method::kH2O, 2, 8),
                        finish(Method::kGemFilter, 2, 0)})
    CHECK(cuda::FinishSelect::can_implement(a).code() ==
          ref::FinishSelect::can_implement(a).code());
  CHECK(cuda::FinishSelect::can_implement(finish(Method::kGemFilter, 2, 8)).is_ok());
  CHECK(ref::FinishSelect::can_implement(finish(Method::kPromptDistill, 70000, 8)).is_ok());
  CHECK(cuda::FinishSelect::can_implement(finish(Method::kPromptDistill, 70000, 8)).code() ==
        StatusCode::kUnsupported);
  if (!cuda::device_available()) {
    const FinishSelectArgs a = finish(Method::kPromptDistill, 2, 8);
    alignas(256) static unsigned char workspace[4096];
    REQUIRE(cuda::FinishSelect::workspace_size(a) <= sizeof workspace);
    CHECK(cuda::FinishSelect::run(a, Workspace{workspace, sizeof workspace}, nullptr).code() ==
          StatusCode::kCudaError);
  }
}

TEST_CASE("cuda host: flash prefill tiles fit every architecture's shared memory per block") {
  using promptdistill::cuda::detail::flash_keys_for;
  using promptdistill::cuda::detail::flash_smem_bytes;
  // 64 keys per step: 70 / 90 / 110 KiB at head dims 64 / 96 / 128.
  CHECK(flash_smem_bytes(64, 64) == 70 * 1024);
  CHECK(flash_smem_bytes(96, 64) == 90 * 1024);
  CHECK(flash_smem_bytes(128, 64) == 110 * 1024);
  const std::size_t kib99 = 99 * 1024, kib227 = 227 * 1024, kib163 = 163 * 1024, kib48 = 48 * 1024;
  // sm_86, sm_89, sm_120 (99 KiB): head dim 128 steps 32 keys (81 KiB); 64 and 96 keep 64.
  CHECK(flash_keys_for(128, kib99) == 32);
  CHECK(flash_smem_bytes(128, 32) <= kib99);
  CHECK(flash_keys_for(96, kib99) == 64);
  CHECK(flash_keys_for(64, kib99) == 64);
  // sm_80 (163 KiB), sm_90 and sm_100 (227 KiB): 64 keys everywhere.
  for (int D : {64, 96, 128}) {
    CHECK(flash_keys_for(D, kib163) == 64);
    CHECK(flash_keys_for(D, kib227) == 64);
  }
  // Below any tile (48 KiB): no flash kernel, the exact kernel runs.
  CHECK(flash_keys_for(128, kib48) == 0);
  CHECK(flash_keys_for(64, kib48) == 0);
}

TEST_CASE(
    "cuda host: cuBLASLt without an algorithm for a shape is kUnsupported, other failures "
    "kCublasError") {
  using promptdistill::cuda::detail::heuristic_status;
  CHECK(heuristic_status(CUBLAS_STATUS_SUCCESS, 1, CUBLAS_STATUS_SUCCESS, 8, 64, 64).is_ok());
  // The heuristic may say "not supported" itself, return no algorithm, or one that is not usable.
  CHECK(heuristic_status(CUBLAS_STATUS_NOT_SUPPORTED, 0, CUBLAS_STATUS_SUCCESS, 8, 64, 64).code() ==
        StatusCode::kUnsupported);
  CHECK(heuristic_status(CUBLAS_STATUS_SUCCESS, 0, CUBLAS_STATUS_SUCCESS, 8, 64, 64).code() ==
        StatusCode::kUnsupported);
  CHECK(heuristic_status(CUBLAS_STATUS_SUCCESS, 1, CUBLAS_STATUS_NOT_SUPPORTED, 8, 64, 64).code() ==
        StatusCode::kUnsupported);
  const Status s =
      heuristic_status(CUBLAS_STATUS_INVALID_VALUE, 0, CUBLAS_STATUS_SUCCESS, 8, 64, 64);
  CHECK(s.code() == StatusCode::kCublasError);
  CHECK(
      std::string(s.message()).find("(" + std::to_string(int(CUBLAS_STATUS_INVALID_VALUE)) + ")") !=
      std::string::npos);
}
