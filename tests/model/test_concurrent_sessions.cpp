// SPDX-License-Identifier: Apache-2.0
// Two sessions used from two threads at once (ref::EigenSession and ref::BatchSession over one
// shared, read-only ModelWeights) give what they give one after the other: the same selections,
// cache lengths and tokens, bit for bit. Also built and run under ThreadSanitizer by
// scripts/run_tests.sh (label `concurrency`).
#include <doctest/doctest.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "promptdistill/batch_session.h"
#include "promptdistill/session_ref.h"
#include "support/random_model.h"

using namespace promptdistill;

namespace {

//! What one session did: its status, and per request the prefill and the generated tokens.
struct Outcome {
  std::string status;
  std::vector<int32_t> first, tokens;
  std::vector<int64_t> retained, cache_lengths;
  std::vector<std::vector<std::vector<int32_t>>> selected;
  bool operator==(const Outcome& o) const {
    return status == o.status && first == o.first && tokens == o.tokens && retained == o.retained &&
           cache_lengths == o.cache_lengths && selected == o.selected;
  }
};

void record(const PrefillResult& r, Outcome* out) {
  out->first.push_back(r.first_token);
  out->retained.insert(out->retained.end(), r.retained.begin(), r.retained.end());
  out->cache_lengths.insert(out->cache_lengths.end(), r.cache_lengths.begin(),
                            r.cache_lengths.end());
  out->selected.insert(out->selected.end(), r.selected.begin(), r.selected.end());
}

Outcome eigen_run(const ModelWeights* w, const std::vector<int32_t>& prompt,
                  const PipelineConfig& c) {
  Outcome o;
  ref::EigenSession s(w);
  PrefillResult r;
  Status st = s.prefill(prompt, c, &r);
  double ms = 0;
  if (st.is_ok()) st = s.generate(r.first_token, 6, {}, &o.tokens, &ms);
  o.status = st.is_ok() ? "ok" : st.message();
  record(r, &o);
  return o;
}

Outcome batch_run(const ModelWeights* w, const std::vector<std::vector<int32_t>>& prompts,
                  const PipelineConfig& c) {
  Outcome o;
  std::unique_ptr<ref::BatchSession> s;
  Status st = ref::BatchSession::create(w, BatchSessionOptions{}, nullptr, &s);
  std::vector<PrefillResult> res;
  if (st.is_ok()) st = s->prefill(prompts, c, &res);
  std::vector<std::vector<int32_t>> tokens;
  if (st.is_ok()) {
    std::vector<int32_t> first;
    for (const auto& r : res) first.push_back(r.first_token);
    double ms = 0;
    st = s->generate(first, 5, {}, &tokens, &ms);
  }
  o.status = st.is_ok() ? "ok" : st.message();
  for (const auto& r : res) record(r, &o);
  for (const auto& t : tokens) o.tokens.insert(o.tokens.end(), t.begin(), t.end());
  return o;
}

PipelineConfig promptdistill_config() {
  PipelineConfig c = PipelineConfig::published_default(PipelineMethod::kPromptDistill);
  c.selection_layers = {1, 3};
  c.n_topks = {24, 10};
  return c;
}

PipelineConfig snapkv_config() {
  PipelineConfig c = PipelineConfig::published_default(PipelineMethod::kSnapKV);
  c.budget = 20;
  c.window = 6;
  return c;
}

}  // namespace

TEST_CASE(
    "concurrency: two EigenSessions and two BatchSessions at once equal their runs one after the "
    "other") {
  const ModelWeights w = pdtest::random_model(17);
  const auto a = pdtest::random_prompt(57, 1), b = pdtest::random_prompt(41, 2);
  const PipelineConfig pd_cfg = promptdistill_config(), snap_cfg = snapkv_config();
  // One after the other.
  const Outcome e1 = eigen_run(&w, a, pd_cfg), e2 = eigen_run(&w, b, snap_cfg);
  const Outcome b1 = batch_run(&w, {a, b}, snap_cfg), b2 = batch_run(&w, {b}, pd_cfg);
  for (const Outcome* o : {&e1, &e2, &b1, &b2}) {
    CHECK(o->status == "ok");
    CHECK(!o->tokens.empty());
  }
  CHECK(e1.retained == std::vector<int64_t>{25, 11});
  // At once: the two EigenSessions, then the two BatchSessions, then all four.
  Outcome t1, t2, t3, t4;
  {
    std::thread x([&] { t1 = eigen_run(&w, a, pd_cfg); }),
        y([&] { t2 = eigen_run(&w, b, snap_cfg); });
    x.join();
    y.join();
  }
  CHECK(t1 == e1);
  CHECK(t2 == e2);
  {
    std::thread x([&] {
      t3 = batch_run(&w, {a, b}, snap_cfg);
    }),
        y([&] { t4 = batch_run(&w, {b}, pd_cfg); });
    x.join();
    y.join();
  }
  CHECK(t3 == b1);
  CHECK(t4 == b2);
  std::vector<Outcome> all(4);
  std::vector<std::thread> threads;
  threads.emplace_back([&] { all[0] = eigen_run(&w, a, pd_cfg); });
  threads.emplace_back([&] { all[1] = eigen_run(&w, b, snap_cfg); });
  threads.emplace_back([&] { all[2] = batch_run(&w, {a, b}, snap_cfg); });
  threads.emplace_back([&] { all[3] = batch_run(&w, {b}, pd_cfg); });
  for (auto& t : threads) t.join();
  CHECK(all[0] == e1);
  CHECK(all[1] == e2);
  CHECK(all[2] == b1);
  CHECK(all[3] == b2);
}
