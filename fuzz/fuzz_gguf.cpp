// SPDX-License-Identifier: Apache-2.0
// libFuzzer target: arbitrary bytes through the GGUF parser, then dequantise every tensor it
// accepts and read the tokenizer from it. Any crash, leak or sanitizer report is a bug.
#include <cstdint>
#include <vector>

#include "promptdistill/gguf.h"
#include "promptdistill/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace promptdistill;
  GgufFile f;
  if (!GgufFile::parse(std::vector<uint8_t>(data, data + size), &f).is_ok()) return 0;
  for (const auto& t : f.tensors()) {
    if (t.numel() > (1 << 20)) continue;
    std::vector<float> out(static_cast<std::size_t>(t.numel()));
    (void)f.dequantize(t, out.data());
  }
  Tokenizer tok;
  if (Tokenizer::from_gguf(f, &tok).is_ok()) {
    std::vector<int32_t> ids;
    (void)tok.encode("Hello 123 <|im_start|> world", &ids);
    std::string text;
    (void)tok.decode(ids, &text);
  }
  return 0;
}
