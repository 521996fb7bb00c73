// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! One prefill + greedy decode on ref::EigenSession with its caches, for the pipeline tests that
//! compare configurations with each other (same tokens, same caches).

#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "promptdistill/session_ref.h"

namespace pdtest {

struct Run {
  promptdistill::PrefillResult prefill;
  std::vector<int32_t> tokens;
  std::vector<promptdistill::ref::KvLayerCache> caches;
};

inline Run run(const promptdistill::ModelWeights& w, const std::vector<int32_t>& prompt,
               const promptdistill::PipelineConfig& c, int64_t new_tokens = 6) {
  promptdistill::ref::EigenSession s(&w);
  Run r;
  promptdistill::Status st = s.prefill(prompt, c, &r.prefill);
  REQUIRE_MESSAGE(st.is_ok(), std::string(st.message()));
  r.caches = s.caches();
  double ms = 0;
  st = s.generate(r.prefill.first_token, new_tokens, {}, &r.tokens, &ms);
  REQUIRE_MESSAGE(st.is_ok(), std::string(st.message()));
  return r;
}

inline bool same_caches(const std::vector<promptdistill::ref::KvLayerCache>& a,
                        const std::vector<promptdistill::ref::KvLayerCache>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t l = 0; l < a.size(); ++l)
    if (a[l].length != b[l].length || a[l].k != b[l].k || a[l].v != b[l].v) return false;
  return true;
}

}  // namespace pdtest
