// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! The fused reference Select on a seeded scoring case (contiguous keys), with every output the
//! tests compare: indices, counts, positions and the pooled scores [B, rows, N], and optionally
//! the hidden-state gather. `extra_columns` widens final_scores to [B, rows, N + extra] (what
//! check_select accepts); the extra columns start at kUnwritten.

#include <doctest/doctest.h>

#include <vector>

#include "promptdistill/promptdistill.h"
#include "support/selector_cases.h"

namespace pdtest {

//! What one Select run wrote (and its status).
template <class T>
struct SelectRun {
  std::vector<int32_t> indices, counts, positions;
  std::vector<float> final_scores;
  std::vector<T> hidden_out;
  promptdistill::Status status;
};

//! What the columns of final_scores past N hold before a run (and must hold after it).
constexpr float kUnwritten = 12345.0f;

template <class T>
inline SelectRun<T> run_select(const ScoreCase<T>& c, promptdistill::MethodConfig cfg,
                               const std::vector<T>* hidden = nullptr, int64_t hidden_dim = 0,
                               const std::vector<int32_t>* positions_in = nullptr,
                               int64_t extra_columns = 0) {
  auto kv = make_kv<T>(Layout::kBSHD, c.k_logical, c.lengths, c.N, c.Hkv, c.D, 16, 1);
  const int64_t R = promptdistill::score_rows(cfg.method, cfg.grouping, c.H, c.Hkv);
  SelectRun<T> r;
  r.indices.assign(std::size_t(c.B * R * c.N), -1);
  r.counts.assign(std::size_t(c.B * R), -1);
  r.positions.assign(std::size_t(c.B * R * c.N), -1);
  const int64_t width = c.N + extra_columns;
  r.final_scores.assign(std::size_t(c.B * R * width), 0.0f);
  for (int64_t row = 0; row < c.B * R; ++row)
    for (int64_t j = c.N; j < width; ++j) r.final_scores[std::size_t(row * width + j)] = kUnwritten;
  promptdistill::SelectArgs<T> a;
  a.config = cfg;
  a.q = c.q_view(c.q.data());
  a.k = kv.view();
  a.lengths = c.lengths.data();
  a.max_length = c.N;
  a.indices = promptdistill::make_view(r.indices.data(), c.B, R, c.N);
  a.counts = promptdistill::make_view(r.counts.data(), c.B, R);
  a.positions = promptdistill::make_view(r.positions.data(), c.B, R, c.N);
  a.final_scores = promptdistill::make_view(r.final_scores.data(), c.B, R, width);
  if (positions_in) a.positions_in = promptdistill::make_view(positions_in->data(), c.B, c.N);
  if (hidden) {
    r.hidden_out.assign(std::size_t(c.B * c.N * hidden_dim), promptdistill::num::from_f32<T>(0.0f));
    a.hidden_in = promptdistill::make_view(hidden->data(), c.B, c.N, hidden_dim);
    a.hidden_out = promptdistill::make_view(r.hidden_out.data(), c.B, c.N, hidden_dim);
  }
  promptdistill::HostWorkspace ws;
  REQUIRE(ws.reserve(promptdistill::ref::Select<T>::workspace_size(a)).is_ok());
  r.status = promptdistill::ref::Select<T>::run(a, ws.workspace());
  return r;
}

}  // namespace pdtest
