// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Tensor parallelism simulated in one process: R ranks are R threads, each driving its own
//! BatchSession on the CPU backend, and `ThreadAllReduce` is their all-reduce: every rank's
//! buffer is replaced by the ranks' buffers added in rank order, ((b_0 + b_1) + b_2) + ..., in f32.
//! A rank that fails aborts the group, so that the others return an error instead of waiting.
//! `run_ranks` drives the ranks, `check_ranks` compares them with each other and the unsharded run.

#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "promptdistill/batch_session.h"
#include "promptdistill/detail/numerics.h"

namespace pdtest {

class ThreadAllReduce {
 public:
  explicit ThreadAllReduce(int64_t ranks)
      : ranks_(ranks), buffers_(static_cast<std::size_t>(ranks), nullptr) {}

  //! Rank `rank`'s all-reduce for BatchSessionOptions::all_reduce.
  promptdistill::AllReduce for_rank(int64_t rank) {
    return [this, rank](void* data, int64_t count, promptdistill::DType dtype,
                        promptdistill::Stream) { return reduce(rank, data, count, dtype); };
  }
  //! Wakes every waiting rank with an error (a rank failed and will not arrive).
  void abort() {
    std::lock_guard<std::mutex> lock(mutex_);
    aborted_ = true;
    arrived_cv_.notify_all();
  }
  int64_t calls() const { return calls_; }

 private:
  promptdistill::Status reduce(int64_t rank, void* data, int64_t count,
                               promptdistill::DType dtype) {
    using promptdistill::Status;
    using promptdistill::StatusCode;
    std::unique_lock<std::mutex> lock(mutex_);
    if (aborted_) return Status(StatusCode::kInternal, "all-reduce: another rank failed");
    if (arrived_ == 0) {
      count_ = count;
      dtype_ = dtype;
    } else if (count != count_ || dtype != dtype_) {
      mismatch_ = true;
    }
    buffers_[std::size_t(rank)] = static_cast<float*>(data);
    const uint64_t generation = generation_;
    if (++arrived_ == ranks_) {
      if (!mismatch_ && dtype_ == promptdistill::DType::kF32) {
        for (int64_t i = 0; i < count_; ++i) {
          float sum = buffers_[0][i];
          for (int64_t r = 1; r < ranks_; ++r)
            sum = promptdistill::num::add(sum, buffers_[std::size_t(r)][i]);
          for (int64_t r = 0; r < ranks_; ++r) buffers_[std::size_t(r)][i] = sum;
        }
      }
      failed_ = mismatch_ || dtype_ != promptdistill::DType::kF32;
      mismatch_ = false;
      arrived_ = 0;
      ++generation_;
      ++calls_;
      arrived_cv_.notify_all();
    } else if (!arrived_cv_.wait_for(lock, std::chrono::minutes(5),
                                     [&] { return generation_ != generation || aborted_; })) {
      aborted_ = true;
      return Status(StatusCode::kInternal,
                    "all-reduce: the other ranks did not arrive within 5 minutes");
    }
    if (generation_ == generation)
      return Status(StatusCode::kInternal, "all-reduce: another rank failed");
    if (failed_)
      return Status(StatusCode::kInternal,
                    "all-reduce: the ranks passed different counts or a type other than f32");
    return Status::ok();
  }

  const int64_t ranks_;
  std::mutex mutex_;
  std::condition_variable arrived_cv_;
  std::vector<float*> buffers_;
  int64_t arrived_ = 0, count_ = 0, calls_ = 0;
  promptdistill::DType dtype_ = promptdistill::DType::kF32;
  uint64_t generation_ = 0;
  bool aborted_ = false, mismatch_ = false, failed_ = false;
};

//! What one rank got: its prefill results, greedy tokens, the logits of its first tokens and the
//! status of the run.
struct RankRun {
  promptdistill::Status status;
  std::vector<promptdistill::PrefillResult> prefill;
  std::vector<std::vector<int32_t>> tokens;
  std::vector<float> first_logits;
  int64_t host_syncs = 0;
};

//! Runs `prompts` with `cfg` on `ranks` sessions of `weights` (ranks = 1: the unsharded session,
//! no all-reduce), one thread per rank, then `new_tokens` greedy tokens.
template <class Session>
std::vector<RankRun> run_ranks(const promptdistill::ModelWeights& weights, int64_t ranks,
                               const std::vector<std::vector<int32_t>>& prompts,
                               const promptdistill::PipelineConfig& cfg, int64_t new_tokens,
                               promptdistill::BatchSessionOptions options = {}) {
  using namespace promptdistill;
  ThreadAllReduce group(ranks);
  std::vector<RankRun> runs(static_cast<std::size_t>(ranks));
  std::vector<std::thread> threads;
  for (int64_t r = 0; r < ranks; ++r) {
    threads.emplace_back([&, r] {
      RankRun& run = runs[std::size_t(r)];
      BatchSessionOptions mine = options;
      if (ranks > 1) {
        mine.tp_size = ranks;
        mine.tp_rank = r;
        mine.all_reduce = group.for_rank(r);
      }
      std::unique_ptr<Session> session;
      run.status = Session::create(&weights, mine, nullptr, &session);
      if (run.status.is_ok()) run.status = session->prefill(prompts, cfg, &run.prefill);
      if (run.status.is_ok()) {
        run.first_logits = session->last_logits();
        run.host_syncs = session->host_syncs();
        std::vector<int32_t> first;
        for (const PrefillResult& p : run.prefill) first.push_back(p.first_token);
        double ms = 0;
        run.status = session->generate(first, new_tokens, {}, &run.tokens, &ms);
      }
      if (!run.status.is_ok()) group.abort();
    });
  }
  for (std::thread& t : threads) t.join();
  return runs;
}

//! max |a - b| / max |b|: the logits' difference relative to their scale.
inline float relative_logit_diff(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  float diff = 0.0f, scale = 0.0f;
  for (std::size_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, std::fabs(a[i] - b[i]));
    scale = std::max(scale, std::fabs(b[i]));
  }
  return scale > 0 ? diff / scale : diff;
}

//! PromptDistill and GemFilter: one selection for every head (the all-reduced one).
inline bool head_uniform(promptdistill::PipelineMethod m) {
  return m == promptdistill::PipelineMethod::kPromptDistill ||
         m == promptdistill::PipelineMethod::kGemFilter;
}

//! Every rank succeeded, agrees with rank 0 on everything it reports, and (head-uniform methods
//! and full KV) with the unsharded run on selections and tokens; returns the largest relative
//! logit difference from the unsharded run. `same_syncs`: the sessions did not check every op (a
//! sync each), so the ranks must synchronise with the host as often as the unsharded session.
inline float check_ranks(const std::vector<RankRun>& ranks, const RankRun& unsharded,
                         promptdistill::PipelineMethod method, bool same_syncs) {
  REQUIRE_MESSAGE(unsharded.status.is_ok(), std::string(unsharded.status.message()));
  float worst = 0.0f;
  for (std::size_t r = 0; r < ranks.size(); ++r) {
    CAPTURE(r);
    const RankRun& run = ranks[r];
    REQUIRE_MESSAGE(run.status.is_ok(), std::string(run.status.message()));
    CHECK(run.first_logits ==
          ranks[0].first_logits);  // bit for bit: every rank holds the same residual stream
    CHECK(run.tokens == ranks[0].tokens);
    CHECK(run.tokens == unsharded.tokens);
    CHECK(run.host_syncs == ranks[0].host_syncs);
    if (same_syncs)
      CHECK(run.host_syncs == unsharded.host_syncs);  // the all-reduces are stream-ordered
    for (std::size_t b = 0; b < run.prefill.size(); ++b) {
      CAPTURE(b);
      const promptdistill::PrefillResult &got = run.prefill[b], &want = unsharded.prefill[b];
      CHECK(got.first_token == want.first_token);
      CHECK(got.retained == want.retained);
      CHECK(got.cache_lengths == want.cache_lengths);
      CHECK(got.next_position == want.next_position);
      if (head_uniform(method) || method == promptdistill::PipelineMethod::kFull) {
        CHECK(got.selected == ranks[0].prefill[b].selected);
        CHECK(got.selected == want.selected);
      }
    }
    worst = std::max(worst, relative_logit_diff(run.first_logits, unsharded.first_logits));
  }
  return worst;
}

}  // namespace pdtest
