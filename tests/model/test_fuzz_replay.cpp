// SPDX-License-Identifier: Apache-2.0
// Replays the kept fuzz inputs (tests/fuzz_corpus/, crashers included) through the GGUF and
// safetensors parsers, the dequantisation and the tokenizer. Passing means no crash and no
// sanitizer report (the sanitizer build runs this too).
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <vector>

#include "promptdistill/gguf.h"
#include "promptdistill/safetensors.h"
#include "promptdistill/tokenizer.h"

using namespace promptdistill;

namespace {
std::vector<uint8_t> bytes_of(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(in)),
                              std::istreambuf_iterator<char>());
}
}  // namespace

TEST_CASE("fuzz replay: every kept input parses or fails cleanly") {
  int files = 0;
  for (const char* target : {"gguf", "safetensors"}) {
    const auto dir = std::filesystem::path(PD_FUZZ_DIR) / target;
    if (!std::filesystem::exists(dir)) continue;
    for (const auto& entry : std::filesystem::directory_iterator(dir)) {
      ++files;
      INFO(entry.path().string());
      const auto data = bytes_of(entry.path());
      if (std::string(target) == "gguf") {
        GgufFile f;
        if (GgufFile::parse(data, &f).is_ok()) {
          for (const auto& t : f.tensors()) {
            if (t.numel() > (1 << 20)) continue;
            std::vector<float> out(static_cast<std::size_t>(t.numel()));
            (void)f.dequantize(t, out.data());
          }
          Tokenizer tok;
          std::vector<int32_t> ids;
          if (Tokenizer::from_gguf(f, &tok).is_ok()) (void)tok.encode("a b 12", &ids);
        }
      } else {
        SafetensorsFile f;
        if (SafetensorsFile::parse(data, &f).is_ok())
          for (const auto& t : f.tensors()) {
            if (t.numel() > (1 << 20)) continue;
            std::vector<float> out(static_cast<std::size_t>(t.numel()));
            (void)f.to_f32(t, out.data());
          }
      }
    }
  }
  MESSAGE(files << " inputs replayed");
  CHECK(files >= 20);
}
