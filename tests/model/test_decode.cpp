// SPDX-License-Identifier: Apache-2.0
// The CPU decode path (Transformer::decode) on a random model: the exact mode equals the prefill
// layer's one-row forward bit for bit (Tier A against `layer`, also on GQA-expanded caches) and
// that token's row of one prefill over the whole sequence, at any thread count; the fast modes
// (f16 weights, f16 cache) stay within stated bounds and do not depend on the thread count; a
// reserved step allocates nothing; bad input gets a Status.
#include <doctest/doctest.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>

#include "promptdistill/session_ref.h"
#include "promptdistill/transformer_ref.h"
#include "support/block_cases.h"
#include "support/random_model.h"

// Counts heap allocations of this test program (every operator new goes through here).
namespace {
std::atomic<int64_t> g_allocations{0};
}
void* operator new(std::size_t n) {
  ++g_allocations;
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

using namespace promptdistill;
using namespace promptdistill::ref;

namespace {

struct Prefilled {
  std::vector<KvLayerCache> caches;
  int32_t first = 0;
  int64_t length = 0;
};

Prefilled prefill(const ModelWeights& w, const std::vector<int32_t>& ids) {
  Transformer t(&w);
  Prefilled p;
  p.length = int64_t(ids.size());
  p.caches.resize(std::size_t(w.config.num_layers));
  std::vector<int32_t> pos(ids.size());
  for (std::size_t i = 0; i < pos.size(); ++i) pos[i] = int32_t(i);
  std::vector<float> x, logits;
  REQUIRE(t.embed(ids.data(), p.length, &x).is_ok());
  for (int64_t l = 0; l < w.config.num_layers; ++l)
    REQUIRE(
        t.layer(l, &x, p.length, pos.data(), p.length, &p.caches[std::size_t(l)], nullptr).is_ok());
  REQUIRE(t.logits(&x[std::size_t((p.length - 1) * w.config.hidden)], &logits).is_ok());
  p.first = argmax(logits);
  return p;
}

//! `steps` greedy steps through `layer` (the reference): each step's logits.
std::vector<std::vector<float>> steps_by_layer(const ModelWeights& w, Prefilled p, int steps) {
  Transformer t(&w);
  std::vector<std::vector<float>> out;
  int32_t token = p.first;
  std::vector<float> x, logits;
  for (int s = 0; s < steps; ++s) {
    const int32_t pos = int32_t(p.length + s);
    REQUIRE(t.embed(&token, 1, &x).is_ok());
    for (int64_t l = 0; l < w.config.num_layers; ++l)
      REQUIRE(t.layer(l, &x, 1, &pos, pos + 1, &p.caches[std::size_t(l)], nullptr).is_ok());
    REQUIRE(t.logits(x.data(), &logits).is_ok());
    out.push_back(logits);
    token = argmax(logits);
  }
  return out;
}

//! The same steps through `decode` with `options`.
std::vector<std::vector<float>> steps_by_decode(const ModelWeights& w, Prefilled p, int steps,
                                                const DecodeOptions& options) {
  Transformer t(&w);
  DecodeWorkspace ws;
  REQUIRE(ws.reserve(w.config, p.length + steps).is_ok());
  for (auto& c : p.caches) {
    if (options.kv == KvStorage::kF16) c.to_half();
    c.reserve(c.length + steps, w.config.head_dim);
  }
  std::vector<std::vector<float>> out;
  int32_t token = p.first;
  for (int s = 0; s < steps; ++s) {
    int32_t next = -1;
    const Status st = t.decode(token, p.length + s, &p.caches, options, &ws, &next);
    REQUIRE_MESSAGE(st.is_ok(), st.message());
    out.push_back(ws.logits());
    CHECK(next == argmax(ws.logits()));
    token = next;
  }
  return out;
}

//! f16 weights and an f16 cache: both fast options.
DecodeOptions fast_options(const DecodeWeights& f16) {
  DecodeOptions o;
  o.weights = &f16, o.kv = KvStorage::kF16;
  return o;
}

bool same_bits(const std::vector<std::vector<float>>& a, const std::vector<std::vector<float>>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (a[i].size() != b[i].size() ||
        std::memcmp(a[i].data(), b[i].data(), a[i].size() * sizeof(float)) != 0)
      return false;
  return true;
}

double max_difference(const std::vector<std::vector<float>>& a,
                      const std::vector<std::vector<float>>& b) {
  double worst = 0;
  for (std::size_t i = 0; i < a.size(); ++i)
    for (std::size_t j = 0; j < a[i].size(); ++j)
      worst = std::max(worst, std::fabs(double(a[i][j]) - double(b[i][j])));
  return worst;
}

}  // namespace

TEST_CASE(
    "decode/exact: the decode step equals the layer forward of one row, bit for bit, at any thread "
    "count") {
  const ModelWeights w = pdtest::random_model(21);
  const Prefilled p = prefill(w, pdtest::random_prompt(300, 4));
  const auto want = steps_by_layer(w, p, 6);
  for (int threads : {1, 2}) {
    set_threads(threads);
    CHECK(same_bits(steps_by_decode(w, p, 6, DecodeOptions{}), want));
  }
  set_threads(0);
  // f32 decode weights are the exact mode too.
  DecodeWeights f32;
  REQUIRE(DecodeWeights::create(w, DecodeWeightFormat::kF32, "", &f32).is_ok());
  DecodeOptions o;
  o.weights = &f32;
  CHECK(o.exact());
  CHECK(same_bits(steps_by_decode(w, p, 6, o), want));
}

TEST_CASE(
    "decode/exact: each decode step equals that token's row of one prefill of the whole sequence") {
  // The decode step's products are the prefill GEMM's chains for one row and its attention the
  // prefill kernel for one row (cpu_kernels.h): no reduction order depends on the row count.
  const ModelWeights w = pdtest::random_model(27);
  const std::vector<int32_t> prompt = pdtest::random_prompt(150, 10);
  const Prefilled p = prefill(w, prompt);
  Transformer t(&w);
  for (int threads : {1, 2}) {
    CAPTURE(threads);
    set_threads(threads);
    // Six greedy steps; the tokens they were fed follow the prompt in one sequence.
    std::vector<int32_t> sequence = prompt;
    Prefilled d = p;
    DecodeWorkspace ws;
    REQUIRE(ws.reserve(w.config, p.length + 6).is_ok());
    std::vector<std::vector<float>> stepped;
    int32_t token = p.first;
    for (int s = 0; s < 6; ++s) {
      sequence.push_back(token);
      REQUIRE(t.decode(token, p.length + s, &d.caches, DecodeOptions{}, &ws, &token).is_ok());
      stepped.push_back(ws.logits());
    }
    std::vector<int32_t> pos(sequence.size());
    for (std::size_t i = 0; i < pos.size(); ++i) pos[i] = int32_t(i);
    const int64_t n = int64_t(sequence.size());
    std::vector<float> x, logits;
    REQUIRE(t.embed(sequence.data(), n, &x).is_ok());
    std::vector<KvLayerCache> caches(std::size_t(w.config.num_layers));
    for (int64_t l = 0; l < w.config.num_layers; ++l)
      REQUIRE(t.layer(l, &x, n, pos.data(), n, &caches[std::size_t(l)], nullptr).is_ok());
    for (int s = 0; s < 6; ++s) {
      REQUIRE(t.logits(&x[std::size_t((p.length + s) * w.config.hidden)], &logits).is_ok());
      CHECK(std::memcmp(logits.data(), stepped[std::size_t(s)].data(),
                        logits.size() * sizeof(float)) == 0);
    }
    // And the caches the steps appended are the prefill's rows.
    for (int64_t l = 0; l < w.config.num_layers; ++l) {
      const KvLayerCache &a = caches[std::size_t(l)], &b = d.caches[std::size_t(l)];
      REQUIRE(a.k.size() == b.k.size());
      CHECK(std::memcmp(a.k.data(), b.k.data(), a.k.size() * sizeof(float)) == 0);
      CHECK(std::memcmp(a.v.data(), b.v.data(), a.v.size() * sizeof(float)) == 0);
    }
  }
  set_threads(0);
}

TEST_CASE(
    "decode/exact: GQA-expanded caches (SnapKV/H2O per query head) decode as the layer forward "
    "does") {
  const ModelWeights w = pdtest::random_model(22);
  Prefilled p = prefill(w, pdtest::random_prompt(90, 5));
  // Every other token per query head, expanded to the 4 query heads.
  std::vector<std::vector<int32_t>> rows(4);
  for (int h = 0; h < 4; ++h)
    for (int32_t i = h % 2; i < 90; i += 2) rows[std::size_t(h)].push_back(i);
  for (auto& c : p.caches) c.keep_per_head(rows, w.config.head_dim, 4);
  CHECK(same_bits(steps_by_decode(w, p, 4, DecodeOptions{}), steps_by_layer(w, p, 4)));
}

TEST_CASE(
    "decode/fast: f16 weights and an f16 cache stay within their bounds, whatever the thread "
    "count") {
  const ModelWeights w = pdtest::random_model(23);
  const Prefilled p = prefill(w, pdtest::random_prompt(600, 6));  // three attention chunks of 256
  const auto exact = steps_by_layer(w, p, 5);
  DecodeWeights f16;
  REQUIRE(DecodeWeights::create(w, DecodeWeightFormat::kF16, "", &f16).is_ok());
  CHECK(f16.bytes() > 0);
  struct Mode {
    const char* name;
    DecodeOptions options;
    double bound;  // max |logit - exact| over the steps, relative to the largest |logit|
  };
  DecodeOptions weights16, cache16;
  weights16.weights = &f16;
  cache16.kv = KvStorage::kF16;
  const DecodeOptions both = fast_options(f16);
  for (const Mode& m : {Mode{"f16 weights", weights16, 4e-3}, Mode{"f16 cache", cache16, 4e-3},
                        Mode{"both", both, 6e-3}}) {
    INFO(std::string(m.name));
    CHECK_FALSE(m.options.exact());
    set_threads(1);
    const auto one = steps_by_decode(w, p, 5, m.options);
    set_threads(2);
    const auto two = steps_by_decode(w, p, 5, m.options);
    set_threads(0);
    CHECK(same_bits(one, two));
    double scale = 0;
    for (const auto& step : exact)
      for (float v : step) scale = std::max(scale, std::fabs(double(v)));
    const double diff = max_difference(one, exact) / scale;
    MESSAGE(std::string(m.name) << ": max |logit - exact| / max |logit| = " << diff);
    CHECK(diff <= m.bound);
  }
}

TEST_CASE("decode: a reserved step allocates nothing") {
  const ModelWeights w = pdtest::random_model(24);
  DecodeWeights f16;
  REQUIRE(DecodeWeights::create(w, DecodeWeightFormat::kF16, "", &f16).is_ok());
  for (const DecodeOptions& options : {DecodeOptions{}, fast_options(f16)}) {
    EigenSession s(&w);
    s.set_decode_options(options);
    PrefillResult r;
    PipelineConfig c;
    REQUIRE(s.prefill(pdtest::random_prompt(100, 7), c, &r).is_ok());
    REQUIRE(s.prepare_decode(20).is_ok());
    CHECK(s.caches()[0].half == (options.kv == KvStorage::kF16));
    int32_t token = r.first_token;
    REQUIRE(s.decode_step(token, &token).is_ok());  // warms the OpenMP thread pool
    const int64_t before = g_allocations.load();
    for (int i = 0; i < 10; ++i) REQUIRE(s.decode_step(token, &token).is_ok());
    CHECK(g_allocations.load() == before);
  }
}

TEST_CASE("decode: bad input gets a Status") {
  const ModelWeights w = pdtest::random_model(25, 2);
  Transformer t(&w);
  Prefilled p = prefill(w, pdtest::random_prompt(10, 8));
  DecodeWorkspace ws;
  int32_t next = 0;
  CHECK(t.decode(-1, 10, &p.caches, DecodeOptions{}, &ws, &next).code() ==
        StatusCode::kInvalidArgument);
  CHECK(t.decode(int32_t(w.config.vocab), 10, &p.caches, DecodeOptions{}, &ws, &next).code() ==
        StatusCode::kInvalidArgument);
  CHECK(t.decode(5, w.config.max_positions, &p.caches, DecodeOptions{}, &ws, &next).code() ==
        StatusCode::kInvalidArgument);
  std::vector<KvLayerCache> one(1);
  CHECK(t.decode(5, 10, &one, DecodeOptions{}, &ws, &next).code() == StatusCode::kInvalidArgument);
  DecodeOptions half;
  half.kv = KvStorage::kF16;  // the caches are still f32
  CHECK(t.decode(5, 10, &p.caches, half, &ws, &next).code() == StatusCode::kInvalidArgument);
  // A half cache refuses the prefill's f32 appends.
  p.caches[0].to_half();
  std::vector<float> x;
  const int32_t id = 5, pos = 10;
  REQUIRE(t.embed(&id, 1, &x).is_ok());
  CHECK(t.layer(0, &x, 1, &pos, 11, &p.caches[0], nullptr).code() == StatusCode::kInvalidArgument);
  DecodeWeights gguf;
  CHECK(DecodeWeights::create(w, DecodeWeightFormat::kGguf, "", &gguf).code() ==
        StatusCode::kInvalidArgument);
  CHECK(DecodeWeights::create(w, DecodeWeightFormat::kGguf, "/nonexistent.gguf", &gguf).code() ==
        StatusCode::kIoError);
  DecodeWeightFormat f;
  CHECK(parse("q3", &f).code() == StatusCode::kInvalidArgument);
  KvStorage k;
  CHECK(parse("bf8", &k).code() == StatusCode::kInvalidArgument);
  EigenSession s(&w);
  CHECK(s.prepare_decode(4).code() == StatusCode::kInvalidArgument);  // before any prefill
}

TEST_CASE("decode: a session's sweep and generation run in the fast modes") {
  const ModelWeights w = pdtest::random_model(26);
  DecodeWeights f16;
  REQUIRE(DecodeWeights::create(w, DecodeWeightFormat::kF16, "", &f16).is_ok());
  EigenSession s(&w);
  s.set_decode_options(fast_options(f16));
  PipelineConfig c;
  c.method = PipelineMethod::kSnapKV;
  c.window = 8;
  int runs = 0;
  REQUIRE(s.prefill_sweep(pdtest::random_prompt(200, 9), c, {32, 64},
                          [&](std::size_t, const PrefillResult& r) {
                            std::vector<int32_t> out;
                            double ms = 0;
                            PD_RETURN_IF_ERROR(s.generate(r.first_token, 6, {}, &out, &ms));
                            CHECK(out.size() == 6);
                            CHECK(s.caches()[0].half);
                            ++runs;
                            return Status::ok();
                          })
              .is_ok());
  CHECK(runs == 2);
}

TEST_CASE("decode: the decoder's argmax (ref::EigenSession's greedy step) follows ArgMax's rule") {
  const auto x = pdtest::argmax_case<float>(1, 1025, 1025, pdtest::ArgMaxRow::kNaN,
                                            pdtest::mix(pdtest::seed(), 92));
  CHECK(ref::argmax(x) == pdtest::argmax_oracle(x, 1, 1025, 1025)[0]);
  const auto ties = pdtest::argmax_case<float>(1, 1025, 1025, pdtest::ArgMaxRow::kTiedMax,
                                               pdtest::mix(pdtest::seed(), 93));
  CHECK(ref::argmax(ties) == pdtest::argmax_oracle(ties, 1, 1025, 1025)[0]);
}
