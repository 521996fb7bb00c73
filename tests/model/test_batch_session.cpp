// SPDX-License-Identifier: Apache-2.0
// The batch session (block ops + Selector API, the code the CUDA session runs) on the CPU backend:
// - against ref::EigenSession, the independent Eigen decoder, for every method at batch 1: the same
//   first token, selections, cache lengths and greedy tokens; caches within 2e-5 of their largest
//   entry (Tier C: the two decoders round attention and GEMMs differently);
// - ragged batches: every request gets what it gets alone (tokens, selections, cache lengths);
// - the docs/algorithms.md properties on this code path: k >= L-1 is full KV bit for bit,
// truncation
//   at the selection point equals truncation after the last layer bit for bit, truncation lowers
//   the peak KV memory;
// - bad input fails with a message and no work.
#include <doctest/doctest.h>

#include <cmath>

#include "promptdistill/batch_session.h"
#include "promptdistill/session_ref.h"
#include "support/compare.h"
#include "support/generators.h"
#include "support/random_model.h"
#include "support/session_runs.h"
#include "pipelines/batch_session/device_buffer.h"

using namespace promptdistill;

namespace {

using BatchRun = pdtest::SessionRun;
using pdtest::max_rel_diff;

BatchRun run_batch(const ModelWeights& w, const std::vector<std::vector<int32_t>>& prompts,
                   const PipelineConfig& cfg) {
  return pdtest::run_session<ref::BatchSession>(w, prompts, cfg);
}

//! A layer's K [length, H_kv, D] as a per-query-head cache holds it, [length, H, D] (query head
//! h reads KV head h / G).
std::vector<float> expanded_to_query_heads(const std::vector<float>& k, const ModelConfig& c) {
  const std::size_t d = std::size_t(c.head_dim), kv = std::size_t(c.num_kv_heads),
                    h = std::size_t(c.num_heads);
  const std::size_t tokens = k.size() / (kv * d);
  std::vector<float> out(tokens * h * d);
  for (std::size_t t = 0; t < tokens; ++t)
    for (std::size_t head = 0; head < h; ++head)
      for (std::size_t i = 0; i < d; ++i)
        out[(t * h + head) * d + i] = k[(t * kv + head / (h / kv)) * d + i];
  return out;
}

}  // namespace

TEST_CASE(
    "batch session (cpu): every method matches ref::EigenSession at batch 1 (Tier C caches, same "
    "tokens)") {
  const ModelWeights w = pdtest::random_model(pdtest::mix(pdtest::seed(), 11));
  for (int64_t L : {1, 33, 71}) {
    const auto prompt = pdtest::random_prompt(L, pdtest::mix(pdtest::seed(), 12, uint64_t(L)));
    for (const PipelineConfig& cfg : pdtest::every_method_small()) {
      if (!cfg.validate(w.config, L).is_ok()) continue;
      CAPTURE(L);
      CAPTURE(std::string(to_string(cfg.method)));
      CAPTURE(cfg.cache_truncation_end);
      CAPTURE(pdtest::describe(cfg));
      ref::EigenSession s(&w);
      PrefillResult want;
      REQUIRE(s.prefill(prompt, cfg, &want).is_ok());
      std::vector<int32_t> want_tokens;
      double ms = 0;
      const auto caches = s.caches();
      REQUIRE(s.generate(want.first_token, 6, {}, &want_tokens, &ms).is_ok());
      const BatchRun got = run_batch(w, std::vector<std::vector<int32_t>>{prompt}, cfg);
      CHECK(got.prefill[0].first_token == want.first_token);
      CHECK(got.prefill[0].retained == want.retained);
      CHECK(got.prefill[0].selected == want.selected);
      CHECK(got.prefill[0].propagated == want.propagated);
      CHECK(got.prefill[0].cache_lengths == want.cache_lengths);
      CHECK(got.prefill[0].next_position == want.next_position);
      CHECK(got.tokens[0] == want_tokens);
      for (int64_t l = 0; l < w.config.num_layers; ++l) {
        CAPTURE(l);
        CHECK(max_rel_diff(got.k[0][std::size_t(l)], caches[std::size_t(l)].k) <= 2e-5f);
      }
    }
  }
}

TEST_CASE("batch session (cpu): a ragged batch gives every request what it gets alone") {
  const ModelWeights w = pdtest::random_model(pdtest::mix(pdtest::seed(), 21));
  const std::vector<int64_t> lengths = {64, 1, 45, 33};
  std::vector<std::vector<int32_t>> prompts;
  for (std::size_t b = 0; b < lengths.size(); ++b)
    prompts.push_back(pdtest::random_prompt(lengths[b], pdtest::mix(pdtest::seed(), 22, b)));
  for (PipelineConfig cfg : pdtest::every_method_small()) {
    CAPTURE(std::string(to_string(cfg.method)));
    CAPTURE(cfg.cache_truncation_end);
    CAPTURE(pdtest::describe(cfg));
    std::vector<std::vector<int32_t>> batch;
    for (const auto& p : prompts)
      if (cfg.validate(w.config, int64_t(p.size())).is_ok()) batch.push_back(p);
    const BatchRun all = run_batch(w, batch, cfg);
    for (std::size_t b = 0; b < batch.size(); ++b) {
      CAPTURE(b);
      const BatchRun one = run_batch(w, std::vector<std::vector<int32_t>>{batch[b]}, cfg);
      CHECK(all.prefill[b].first_token == one.prefill[0].first_token);
      CHECK(all.prefill[b].selected == one.prefill[0].selected);
      CHECK(all.prefill[b].propagated == one.prefill[0].propagated);
      CHECK(all.prefill[b].cache_lengths == one.prefill[0].cache_lengths);
      CHECK(all.tokens[b] == one.tokens[0]);
      for (int64_t l = 0; l < w.config.num_layers; ++l) {
        // Per query head, a layer compressed for some request of the batch is GQA-expanded for
        // all of them: a request the budget leaves whole holds the same tokens, expanded.
        std::vector<float> got = all.k[b][std::size_t(l)], want = one.k[0][std::size_t(l)];
        if (got.size() > want.size()) want = expanded_to_query_heads(want, w.config);
        CHECK(max_rel_diff(got, want) <= 1e-5f);
      }
    }
  }
}

TEST_CASE(
    "batch session (cpu): k >= L-1 is full KV, and both truncation points agree, bit for bit") {
  const ModelWeights w = pdtest::random_model(pdtest::mix(pdtest::seed(), 31));
  const std::vector<std::vector<int32_t>> prompts = {
      pdtest::random_prompt(50, pdtest::mix(pdtest::seed(), 32)),
      pdtest::random_prompt(29, pdtest::mix(pdtest::seed(), 33))};
  PipelineConfig full;
  PipelineConfig pd;
  pd.method = PipelineMethod::kPromptDistill;
  pd.selection_layers = {2};
  pd.n_topks = {200};
  pd.cache_truncation_end = 1;
  const BatchRun a = run_batch(w, prompts, full), b = run_batch(w, prompts, pd);
  CHECK(a.tokens == b.tokens);
  CHECK(a.k == b.k);

  pd.selection_layers = {1, 3};
  pd.n_topks = {30, 12};
  pd.cache_truncation_end = -1;
  const BatchRun at_selection = run_batch(w, prompts, pd);
  pd.truncate_after_last_layer = true;
  const BatchRun after_last = run_batch(w, prompts, pd);
  CHECK(at_selection.tokens == after_last.tokens);
  CHECK(at_selection.k == after_last.k);
  CHECK(at_selection.prefill[0].cache_lengths == after_last.prefill[0].cache_lengths);
  CHECK(at_selection.peak_kv < after_last.peak_kv);  // the point of truncating early
  MESSAGE("peak KV bytes: truncation at the selection point "
          << at_selection.peak_kv << ", after the last layer " << after_last.peak_kv << ", full "
          << a.peak_kv);
}

TEST_CASE("batch session (cpu): bad input fails with a message") {
  const ModelWeights w = pdtest::random_model(pdtest::mix(pdtest::seed(), 41));
  std::unique_ptr<ref::BatchSession> s;
  REQUIRE(ref::BatchSession::create(&w, pdtest::thorough_session_options(), nullptr, &s).is_ok());
  std::vector<PrefillResult> out;
  PipelineConfig cfg;
  CHECK(s->prefill({}, cfg, &out).code() == StatusCode::kInvalidArgument);
  Status st = s->prefill({{5, 6}, {}}, cfg, &out);
  CHECK(st.code() == StatusCode::kInvalidArgument);
  CHECK(std::string(st.message()).find("request 1") != std::string::npos);
  st = s->prefill({{5, 6, 300}}, cfg, &out);
  CHECK(st.code() == StatusCode::kInvalidArgument);
  CHECK(std::string(st.message()).find("vocabulary") != std::string::npos);
  std::vector<int32_t> next;
  CHECK(s->decode_step({1}, &next).code() == StatusCode::kInvalidArgument);  // before any prefill
  cfg.method = PipelineMethod::kSnapKV;
  cfg.budget = 8;
  cfg.window = 4;
  REQUIRE(
      s->prefill({pdtest::random_prompt(20, 1), pdtest::random_prompt(9, 2)}, cfg, &out).is_ok());
  CHECK(s->decode_step({1}, &next).code() == StatusCode::kShapeMismatch);
  CHECK(s->decode_step({1, 300}, &next).code() == StatusCode::kInvalidArgument);
  CHECK(s->decode_step({1, 2}, &next).is_ok());
  // A prompt that does not fit the memory limit fails before any work, with the numbers.
  BatchSessionOptions tight = pdtest::thorough_session_options();
  tight.memory_limit_bytes = 200 * 1024;
  REQUIRE(ref::BatchSession::create(&w, tight, nullptr, &s).is_ok());
  st = s->prefill({pdtest::random_prompt(500, 3)}, PipelineConfig{}, &out);
  CHECK(st.code() == StatusCode::kOutOfMemory);
  CHECK(std::string(st.message()).find("MiB") != std::string::npos);
  CHECK(s->memory_bytes() == s->weight_bytes());  // nothing was allocated for it
  BatchSessionOptions bad;
  bad.mlp_chunk_rows = 0;
  CHECK(ref::BatchSession::create(&w, bad, nullptr, &s).code() == StatusCode::kInvalidArgument);
}

TEST_CASE("batch session (cpu): a prefill synchronises with the host a fixed number of times") {
  // Selections stay on the backend (Select's outputs feed CompactKv, the RoPE rows and the kept
  // ids are gathered there) and the results come back once at the end: the status word, the
  // recorded selections and the first tokens' logits. The count must not grow with the layers,
  // the stages, the compacted layers or the batch.
  const ModelWeights w = pdtest::random_model(pdtest::mix(pdtest::seed(), 43));
  const std::vector<std::vector<int32_t>> prompts = {
      pdtest::random_prompt(61, 1), pdtest::random_prompt(44, 2), pdtest::random_prompt(70, 3)};
  BatchSessionOptions options = pdtest::thorough_session_options();
  options.check_every_op = false;  // the debugging switch reads the status after every op
  options.decode_reserve =
      16;  // no cache grows in the 4 decode steps below (that would record again)
  std::unique_ptr<ref::BatchSession> s;
  REQUIRE(ref::BatchSession::create(&w, options, nullptr, &s).is_ok());
  for (PipelineConfig cfg : pdtest::every_method_small()) {
    for (bool after_last_layer : {false, true}) {
      if (after_last_layer && cfg.method != PipelineMethod::kPromptDistill) continue;
      cfg.truncate_after_last_layer = after_last_layer;
      INFO(to_string(cfg.method) << " stages " << cfg.selection_layers.size() << " tt "
                                 << cfg.cache_truncation_end << " after last layer "
                                 << after_last_layer);
      std::vector<PrefillResult> out;
      REQUIRE(s->prefill(prompts, cfg, &out).is_ok());
      const bool truncates_later = after_last_layer && cfg.cache_truncation_end != 0;
      const int64_t expected = cfg.method == PipelineMethod::kFull ? 2 : truncates_later ? 5 : 3;
      CHECK(s->host_syncs() == expected);
      // Each decode step brings back its B next tokens (the argmax runs on the backend), nothing
      // else, whether it runs op by op, is recorded or is replayed.
      std::vector<int32_t> tokens = {out[0].first_token, out[1].first_token, out[2].first_token};
      for (int64_t step = 1; step <= 4; ++step) {
        REQUIRE(s->decode_step(tokens, &tokens).is_ok());
        CHECK(s->host_syncs() == expected + step);
      }
      CHECK(s->decode_graph_replays() == 3);  // the first step ran op by op and was recorded
      CHECK(s->decode_graph_status().is_ok());
    }
  }
}

TEST_CASE(
    "batch session (cpu): recorded decode steps give the tokens and caches of op-by-op steps, bit "
    "for bit") {
  // BatchSessionOptions::decode_graph: the CPU reference replays a recorded step as CUDA replays a
  // graph, under its rules (no allocation, upload or download inside: a step that did one would
  // fail here). decode_reserve 2 makes the caches grow during the decode, so steps are recorded
  // again after each growth; every method, per query head included, on a ragged batch.
  const uint64_t seed = pdtest::mix(pdtest::seed(), 44);
  CAPTURE(seed);
  const ModelWeights w = pdtest::random_model(seed);
  const std::vector<std::vector<int32_t>> prompts = {pdtest::random_prompt(61, 4),
                                                     pdtest::random_prompt(44, 5)};
  for (const PipelineConfig& cfg : pdtest::every_method_small()) {
    INFO(to_string(cfg.method) << " " << to_string(cfg.grouping) << " stages "
                               << cfg.selection_layers.size() << " tt "
                               << cfg.cache_truncation_end);
    BatchSessionOptions options;
    options.decode_reserve = 2;
    options.mlp_chunk_rows = 40;
    std::vector<BatchRun> runs;
    std::vector<int64_t> replays;
    for (bool graph : {false, true}) {
      options.decode_graph = graph;
      std::unique_ptr<ref::BatchSession> s;
      REQUIRE(ref::BatchSession::create(&w, options, nullptr, &s).is_ok());
      BatchRun r;
      REQUIRE(s->prefill(prompts, cfg, &r.prefill).is_ok());
      const int64_t prefill_syncs = s->host_syncs();
      std::vector<int32_t> first = {r.prefill[0].first_token, r.prefill[1].first_token};
      double ms = 0;
      const Status st = s->generate(first, 12, {}, &r.tokens, &ms);
      REQUIRE_MESSAGE(st.is_ok(), std::string(st.message()));
      REQUIRE_MESSAGE(s->decode_graph_status().is_ok(),
                      std::string(s->decode_graph_status().message()));
      CHECK(s->host_syncs() == prefill_syncs + 11);  // one per step
      r.k.resize(2);
      r.v.resize(2);
      for (int64_t b = 0; b < 2; ++b)
        for (int64_t l = 0; l < w.config.num_layers; ++l) {
          std::vector<float> k, v;
          REQUIRE(s->read_cache(l, b, &k, &v).is_ok());
          r.k[std::size_t(b)].push_back(k);
          r.v[std::size_t(b)].push_back(v);
        }
      runs.push_back(std::move(r));
      replays.push_back(s->decode_graph_replays());
    }
    CHECK(replays[0] == 0);
    CHECK(replays[1] > 0);
    CHECK(replays[1] < 10);  // the caches grew: some steps were recorded again
    CHECK(runs[1].tokens == runs[0].tokens);
    for (std::size_t b = 0; b < 2; ++b)
      for (std::size_t l = 0; l < runs[0].k[b].size(); ++l) {
        CAPTURE(b);
        CAPTURE(l);
        CHECK(pdtest::bitwise_equal(runs[1].k[b][l], runs[0].k[b][l]));
        CHECK(pdtest::bitwise_equal(runs[1].v[b][l], runs[0].v[b][l]));
      }
  }
}

TEST_CASE(
    "generation: the prefill's token is always kept; a decoded stop token ends it unreturned (both "
    "sessions)") {
  // The reference loops (PromptDistill's needle driver, GemFilter's my_greedy_generate) append
  // the first token unconditionally and break on the end-of-sequence token before appending it.
  const ModelWeights w = pdtest::random_model(pdtest::mix(pdtest::seed(), 47));
  const std::vector<int32_t> prompt = pdtest::random_prompt(40, 5);
  const PipelineConfig cfg;
  ref::EigenSession reference(&w);
  PrefillResult pre;
  REQUIRE(reference.prefill(prompt, cfg, &pre).is_ok());
  std::vector<int32_t> free_run;
  double ms = 0;
  REQUIRE(reference.generate(pre.first_token, 8, {}, &free_run, &ms).is_ok());
  REQUIRE(free_run.size() == 8u);
  for (const std::vector<int32_t>& stop :
       {std::vector<int32_t>{free_run[3]}, std::vector<int32_t>{free_run[0]},
        std::vector<int32_t>{free_run[7]}}) {
    std::vector<int32_t> expected = {free_run[0]};
    for (std::size_t i = 1;
         i < free_run.size() && std::find(stop.begin(), stop.end(), free_run[i]) == stop.end(); ++i)
      expected.push_back(free_run[i]);
    CAPTURE(stop[0]);
    ref::EigenSession again(&w);
    REQUIRE(again.prefill(prompt, cfg, &pre).is_ok());
    std::vector<int32_t> got;
    REQUIRE(again.generate(pre.first_token, 8, stop, &got, &ms).is_ok());
    CHECK(got == expected);
    std::unique_ptr<ref::BatchSession> batch;
    REQUIRE(ref::BatchSession::create(&w, BatchSessionOptions{}, nullptr, &batch).is_ok());
    std::vector<PrefillResult> out;
    REQUIRE(batch->prefill({prompt, prompt}, cfg, &out).is_ok());
    std::vector<std::vector<int32_t>> batch_tokens;
    REQUIRE(batch->generate({out[0].first_token, out[1].first_token}, 8, stop, &batch_tokens, &ms)
                .is_ok());
    CHECK(batch_tokens[0] == expected);
    CHECK(batch_tokens[1] == expected);
  }
}

TEST_CASE(
    "batch session (cpu): create_random draws its weights from the seed alone, like a checkpoint "
    "of that shape") {
  const ModelWeights host = pdtest::random_model(1);
  const ModelConfig& c = host.config;
  auto first_run = [&](uint64_t seed) {
    std::unique_ptr<ref::BatchSession> s;
    Status st = ref::BatchSession::create_random(c, seed, BatchSessionOptions{}, nullptr, &s);
    REQUIRE_MESSAGE(st.is_ok(), std::string(st.message()));
    std::vector<PrefillResult> res;
    st = s->prefill({pdtest::random_prompt(50, 3)}, PipelineConfig{}, &res);
    REQUIRE_MESSAGE(st.is_ok(), std::string(st.message()));
    std::vector<float> k, v;
    REQUIRE(s->read_cache(c.num_layers - 1, 0, &k, &v).is_ok());
    return std::make_pair(k, s->weight_bytes());
  };
  const auto a = first_run(7), b = first_run(7), other = first_run(8);
  CHECK(pdtest::bitwise_equal(a.first, b.first));
  CHECK(a.first != other.first);
  // The same tensors as create() uploads for a checkpoint of this shape.
  std::unique_ptr<ref::BatchSession> from_host;
  REQUIRE(ref::BatchSession::create(&host, BatchSessionOptions{}, nullptr, &from_host).is_ok());
  CHECK(a.second == from_host->weight_bytes());
  // Activations stay O(1) through every layer with the random scales.
  float largest = 0;
  for (float x : a.first) largest = std::max(largest, std::fabs(x));
  CHECK(largest > 0.1f);
  CHECK(largest < 100.0f);
}

TEST_CASE(
    "batch session (cpu): while a decode step is being recorded, buffers refuse to allocate or "
    "copy to or from the host") {
  // What keeps a recorded step replayable (and host_syncs() honest): inside it, nothing may be
  // allocated (a pointer the graph holds would change), uploaded from pageable memory or
  // downloaded (a hidden synchronisation).
  session::MemoryLedger ledger;
  session::DeviceBuffer<RefBackend> buffer(&ledger);
  REQUIRE(buffer.allocate(64, nullptr).is_ok());
  const int64_t generation = ledger.generation;
  int64_t syncs = 0;
  std::vector<int32_t> host;
  ledger.recording = true;
  CHECK(buffer.reserve(32, nullptr).is_ok());  // it fits: nothing happens
  CHECK(buffer.reserve(4096, nullptr).code() == StatusCode::kInternal);
  CHECK(buffer.upload(std::vector<int32_t>{1, 2}, nullptr).code() == StatusCode::kInternal);
  const Status st = buffer.download(2, &host, nullptr, &syncs);
  CHECK(st.code() == StatusCode::kInternal);
  CHECK(std::string(st.message()).find("recorded decode step") != std::string::npos);
  CHECK(syncs == 0);
  CHECK(ledger.generation == generation);
  ledger.recording = false;
  CHECK(buffer.reserve(4096, nullptr).is_ok());
  CHECK(ledger.generation > generation);  // a recorded step is stale now
  CHECK(buffer.download(2, &host, nullptr, &syncs).is_ok());
  CHECK(syncs == 1);
}
