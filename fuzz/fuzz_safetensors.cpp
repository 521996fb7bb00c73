// SPDX-License-Identifier: Apache-2.0
// libFuzzer target: arbitrary bytes through the safetensors parser and the f32 conversion.
#include <cstdint>
#include <vector>

#include "promptdistill/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace promptdistill;
  SafetensorsFile f;
  if (!SafetensorsFile::parse(std::vector<uint8_t>(data, data + size), &f).is_ok()) return 0;
  for (const auto& t : f.tensors()) {
    if (t.numel() > (1 << 20)) continue;
    std::vector<float> out(static_cast<std::size_t>(t.numel()));
    (void)f.to_f32(t, out.data());
  }
  return 0;
}
