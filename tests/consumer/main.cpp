// SPDX-License-Identifier: Apache-2.0
// A program outside the project: selects tokens with the installed reference backend.
#include <promptdistill/promptdistill.h>

#include <cstdio>
#include <vector>

int main() {
  using namespace promptdistill;
  std::vector<float> scores = {0.5f, 3.0f, 1.0f, 3.0f, 2.0f};
  std::vector<int32_t> lengths = {5}, indices(5), counts(1);
  TopKArgs a;
  a.scores = make_view<const float>(scores.data(), 1, 1, 5);
  a.lengths = lengths.data();
  a.k = 2;
  a.indices = make_view(indices.data(), 1, 1, 5);
  a.counts = make_view(counts.data(), 1, 1);
  const Status s = ref::TopK::run(a, Workspace{});
  if (!s.is_ok() || counts[0] != 2 || indices[0] != 1 || indices[1] != 3) {
    std::printf("unexpected: %s count=%d\n", s.message(), counts[0]);
    return 1;
  }
#if defined(CONSUMER_HAS_CUDA)
  std::printf("cuda backend linked; device available: %s\n",
              cuda::device_available() ? "yes" : "no");
#endif
  std::printf("consumer ok: kept %d %d\n", indices[0], indices[1]);
  return 0;
}
