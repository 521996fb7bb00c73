// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
//! Byte-level BPE (GPT-2 family) with the GPT-2 pre-tokenizer regex implemented by hand:
//!   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+

#include "promptdistill/tokenizer.h"

#include <algorithm>
#include <climits>

#include "promptdistill/gguf.h"

namespace promptdistill {
namespace {

struct CodepointRange {
  uint32_t lo, hi;
};
#include "unicode_tables.inc"

template <std::size_t N>
bool in_ranges(const CodepointRange (&r)[N], uint32_t cp) {
  std::size_t lo = 0, hi = N;
  while (lo < hi) {
    const std::size_t mid = (lo + hi) / 2;
    if (cp < r[mid].lo) hi = mid;
    else if (cp > r[mid].hi) lo = mid + 1;
    else return true;
  }
  return false;
}
bool is_letter(uint32_t cp) { return in_ranges(kLetterRanges, cp); }
bool is_number(uint32_t cp) { return in_ranges(kNumberRanges, cp); }
bool is_space(uint32_t cp) { return in_ranges(kWhitespaceRanges, cp); }

//! Decodes UTF-8 into code points with their byte offsets; false on invalid input.
bool decode_utf8(const std::string& s, std::vector<uint32_t>* cps, std::vector<std::size_t>* offsets) {
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    int len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
    if (len == 0 || i + std::size_t(len) > s.size()) return false;
    uint32_t cp = len == 1 ? c : len == 2 ? (c & 0x1f) : len == 3 ? (c & 0x0f) : (c & 0x07);
    for (int k = 1; k < len; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + std::size_t(k)]);
      if ((cc >> 6) != 0x2) return false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    const uint32_t min_cp[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_cp[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    cps->push_back(cp);
    offsets->push_back(i);
    i += std::size_t(len);
  }
  offsets->push_back(s.size());
  return true;
}

void append_utf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(char(cp));
  } else if (cp < 0x800) {
    out->push_back(char(0xc0 | (cp >> 6)));
    out->push_back(char(0x80 | (cp & 0x3f)));
  } else if (cp < 0x10000) {
    out->push_back(char(0xe0 | (cp >> 12)));
    out->push_back(char(0x80 | ((cp >> 6) & 0x3f)));
    out->push_back(char(0x80 | (cp & 0x3f)));
  } else {
    out->push_back(char(0xf0 | (cp >> 18)));
    out->push_back(char(0x80 | ((cp >> 12) & 0x3f)));
    out->push_back(char(0x80 | ((cp >> 6) & 0x3f)));
    out->push_back(char(0x80 | (cp & 0x3f)));
  }
}

//! GPT-2's reversible byte -> printable code point map.
struct ByteMap {
  uint32_t to_cp[256];
  std::unordered_map<uint32_t, uint8_t> to_byte;
  ByteMap() {
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
      to_cp[b] = printable ? uint32_t(b) : uint32_t(256 + n++);
      to_byte[to_cp[b]] = uint8_t(b);
    }
  }
};
const ByteMap& byte_map() {
  static const ByteMap map;
  return map;
}

//! Splits code points [begin, end) with the GPT-2 regex; emits [start, stop) pairs.
void gpt2_split(const std::vector<uint32_t>& cp, std::size_t begin, std::size_t end,
                std::vector<std::pair<std::size_t, std::size_t>>* out) {
  std::size_t i = begin;
  auto is_other = [&](uint32_t c) { return !is_space(c) && !is_letter(c) && !is_number(c); };
  while (i < end) {
    // Contractions.
    if (cp[i] == '\'' && i + 1 < end) {
      const uint32_t a = cp[i + 1], b = i + 2 < end ? cp[i + 2] : 0;
      std::size_t len = 0;
      if (a == 's' || a == 't' || a == 'm' || a == 'd') len = 2;
      else if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) len = 3;
      if (len) {
        out->emplace_back(i, i + len);
        i += len;
        continue;
      }
    }
    // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`
    const std::size_t j = cp[i] == ' ' && i + 1 < end ? i + 1 : i;
    bool (*classes[3])(uint32_t) = {is_letter, is_number, nullptr};
    bool matched = false;
    for (int k = 0; k < 3 && !matched; ++k) {
      auto in_class = [&](uint32_t c) { return k < 2 ? classes[k](c) : is_other(c); };
      if (j < end && in_class(cp[j])) {
        std::size_t e = j + 1;
        while (e < end && in_class(cp[e])) ++e;
        out->emplace_back(i, e);
        i = e;
        matched = true;
      }
    }
    if (matched) continue;
    // `\s+(?!\S)` then `\s+`
    if (is_space(cp[i])) {
      std::size_t e = i + 1;
      while (e < end && is_space(cp[e])) ++e;
      if (e < end && e - i > 1) --e;  // leave the last space to prefix the next word
      out->emplace_back(i, e);
      i = e;
      continue;
    }
    out->emplace_back(i, i + 1);  // unreachable for valid classes; keeps progress guaranteed
    ++i;
  }
}

}  // namespace

Status Tokenizer::from_gguf(const GgufFile& f, Tokenizer* out) noexcept {
  try {
    Tokenizer t;
    std::string model;
    PD_RETURN_IF_ERROR(f.get_string("tokenizer.ggml.model", &model));
    if (model != "gpt2") return Status(StatusCode::kUnsupported, "tokenizer: model '%.40s' is not supported (gpt2 byte-level BPE)", model.c_str());
    std::string pre = "default";
    if (f.find("tokenizer.ggml.pre")) PD_RETURN_IF_ERROR(f.get_string("tokenizer.ggml.pre", &pre));
    if (pre == "smollm") t.pre_ = Pre::kSmolLM;
    else if (pre == "gpt2" || pre == "default") t.pre_ = Pre::kGpt2;
    else return Status(StatusCode::kUnsupported, "tokenizer: pre-tokenizer '%.40s' is not supported (smollm, gpt2)", pre.c_str());
    PD_RETURN_IF_ERROR(f.get_strings("tokenizer.ggml.tokens", &t.tokens_));
    if (t.tokens_.empty() || t.tokens_.size() > INT32_MAX) return Status(StatusCode::kCorruptFile, "tokenizer: empty vocabulary");
    std::vector<int64_t> types;
    if (f.find("tokenizer.ggml.token_type")) PD_RETURN_IF_ERROR(f.get_ints("tokenizer.ggml.token_type", &types));
    if (!types.empty() && types.size() != t.tokens_.size())
      return Status(StatusCode::kCorruptFile, "tokenizer: %zu token types for %zu tokens", types.size(), t.tokens_.size());
    t.types_.assign(t.tokens_.size(), 1);
    for (std::size_t i = 0; i < types.size(); ++i) t.types_[i] = int32_t(types[i]);
    for (std::size_t i = 0; i < t.tokens_.size(); ++i) {
      t.ids_.emplace(t.tokens_[i], int32_t(i));
      if ((t.types_[i] == 3 || t.types_[i] == 4) && !t.tokens_[i].empty()) t.specials_.push_back(int32_t(i));
    }
    std::stable_sort(t.specials_.begin(), t.specials_.end(),
                     [&](int32_t a, int32_t b) { return t.tokens_[std::size_t(a)].size() > t.tokens_[std::size_t(b)].size(); });
    std::vector<std::string> merges;
    PD_RETURN_IF_ERROR(f.get_strings("tokenizer.ggml.merges", &merges));
    for (std::size_t r = 0; r < merges.size(); ++r) {
      if (merges[r].find(' ') == std::string::npos)
        return Status(StatusCode::kCorruptFile, "tokenizer: merge %zu ('%.40s') has no space", r, merges[r].c_str());
      t.merge_rank_.emplace(merges[r], int32_t(r));
    }
    int64_t v = -1;
    if (f.find("tokenizer.ggml.bos_token_id")) PD_RETURN_IF_ERROR(f.get_int("tokenizer.ggml.bos_token_id", &v));
    t.bos_ = int32_t(v);
    v = -1;
    if (f.find("tokenizer.ggml.eos_token_id")) PD_RETURN_IF_ERROR(f.get_int("tokenizer.ggml.eos_token_id", &v));
    t.eos_ = int32_t(v);
    if (t.bos_ >= int32_t(t.tokens_.size()) || t.eos_ >= int32_t(t.tokens_.size()))
      return Status(StatusCode::kCorruptFile, "tokenizer: bos/eos ids outside the vocabulary");
    *out = std::move(t);
    return Status::ok();
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kOutOfMemory, "tokenizer: out of host memory");
  }
}

void Tokenizer::bpe(const std::string& word, std::vector<int32_t>* ids) const {
  // Symbols: the UTF-8 strings of the byte-mapped code points.
  std::vector<std::string> sym;
  std::vector<uint32_t> cps;
  std::vector<std::size_t> offs;
  decode_utf8(word, &cps, &offs);
  for (std::size_t i = 0; i < cps.size(); ++i) sym.push_back(word.substr(offs[i], offs[i + 1] - offs[i]));
  while (sym.size() > 1) {
    int32_t best = INT32_MAX;
    std::size_t at = 0;
    for (std::size_t i = 0; i + 1 < sym.size(); ++i) {
      const auto it = merge_rank_.find(sym[i] + " " + sym[i + 1]);
      if (it != merge_rank_.end() && it->second < best) best = it->second, at = i;
    }
    if (best == INT32_MAX) break;
    // Merge every occurrence of the best pair, left to right.
    const std::string a = sym[at], b = sym[at + 1];
    std::vector<std::string> next;
    for (std::size_t i = 0; i < sym.size(); ++i) {
      if (i + 1 < sym.size() && sym[i] == a && sym[i + 1] == b) {
        next.push_back(a + b);
        ++i;
      } else {
        next.push_back(sym[i]);
      }
    }
    sym.swap(next);
  }
  for (const auto& s : sym) {
    const auto it = ids_.find(s);
    if (it != ids_.end()) {
      ids->push_back(it->second);
    } else {  // not in the vocabulary: fall back to its single byte-level symbols
      std::vector<uint32_t> c2;
      std::vector<std::size_t> o2;
      decode_utf8(s, &c2, &o2);
      for (std::size_t i = 0; i < c2.size(); ++i) {
        const auto one = ids_.find(s.substr(o2[i], o2[i + 1] - o2[i]));
        if (one != ids_.end()) ids->push_back(one->second);
      }
    }
  }
}

Status Tokenizer::encode(const std::string& text, std::vector<int32_t>* ids, bool parse_special) const noexcept {
  try {
    ids->clear();
    std::vector<uint32_t> cps;
    std::vector<std::size_t> offs;
    if (!decode_utf8(text, &cps, &offs)) return Status(StatusCode::kInvalidArgument, "tokenizer: the text is not valid UTF-8");
    const ByteMap& bm = byte_map();
    auto encode_segment = [&](std::size_t cbegin, std::size_t cend) {
      // Pieces: SmolLM isolates every number code point first, then the GPT-2 regex runs on each piece.
      std::vector<std::pair<std::size_t, std::size_t>> pieces, words;
      if (pre_ == Pre::kSmolLM) {
        std::size_t start = cbegin;
        for (std::size_t i = cbegin; i < cend; ++i)
          if (is_number(cps[i])) {
            if (start < i) pieces.emplace_back(start, i);
            pieces.emplace_back(i, i + 1);
            start = i + 1;
          }
        if (start < cend) pieces.emplace_back(start, cend);
      } else {
        pieces.emplace_back(cbegin, cend);
      }
      for (const auto& p : pieces) gpt2_split(cps, p.first, p.second, &words);
      for (const auto& w : words) {
        std::string mapped;
        for (std::size_t byte = offs[w.first]; byte < offs[w.second]; ++byte) append_utf8(bm.to_cp[uint8_t(text[byte])], &mapped);
        bpe(mapped, ids);
      }
    };
    // Special tokens first: leftmost match, longest token at that position.
    std::size_t seg = 0, ci = 0;
    while (ci < cps.size()) {
      int32_t hit = -1;
      if (parse_special) {
        for (int32_t id : specials_) {
          const std::string& s = tokens_[std::size_t(id)];
          if (text.compare(offs[ci], s.size(), s) == 0) {
            hit = id;
            break;
          }
        }
      }
      if (hit < 0) {
        ++ci;
        continue;
      }
      encode_segment(seg, ci);
      ids->push_back(hit);
      const std::size_t stop = offs[ci] + tokens_[std::size_t(hit)].size();
      while (ci < cps.size() && offs[ci] < stop) ++ci;
      seg = ci;
    }
    encode_segment(seg, cps.size());
    return Status::ok();
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kOutOfMemory, "tokenizer: out of host memory");
  }
}

Status Tokenizer::decode(const std::vector<int32_t>& ids, std::string* text, bool skip_special) const noexcept {
  try {
    text->clear();
    const ByteMap& bm = byte_map();
    for (int32_t id : ids) {
      if (id < 0 || id >= int32_t(tokens_.size()))
        return Status(StatusCode::kInvalidArgument, "tokenizer: id %d is outside the vocabulary", id);
      if (is_special(id)) {
        if (!skip_special) *text += tokens_[std::size_t(id)];
        continue;
      }
      std::vector<uint32_t> cps;
      std::vector<std::size_t> offs;
      decode_utf8(tokens_[std::size_t(id)], &cps, &offs);
      for (uint32_t cp : cps) {
        const auto it = bm.to_byte.find(cp);
        if (it != bm.to_byte.end()) text->push_back(char(it->second));
        else append_utf8(cp, text);
      }
    }
    return Status::ok();
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kOutOfMemory, "tokenizer: out of host memory");
  }
}

}  // namespace promptdistill
