// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
//! Byte-level BPE (GPT-2 family) with the GPT-2 pre-tokenizer regex implemented by hand:
//!   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+

#include "promptdistill/tokenizer.h"

#include <algorithm>
#include <cstdio>
#include <functional>
#include <queue>
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
    if (cp < r[mid].lo)
      hi = mid;
    else if (cp > r[mid].hi)
      lo = mid + 1;
    else
      return true;
  }
  return false;
}
bool is_letter(uint32_t cp) { return in_ranges(kLetterRanges, cp); }
bool is_number(uint32_t cp) { return in_ranges(kNumberRanges, cp); }
bool is_space(uint32_t cp) { return in_ranges(kWhitespaceRanges, cp); }

//! Decodes UTF-8 into code points with their byte offsets; false on invalid input.
bool decode_utf8(const std::string& s, std::vector<uint32_t>* cps,
                 std::vector<std::size_t>* offsets) {
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
      const bool printable =
          (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
      to_cp[b] = printable ? uint32_t(b) : uint32_t(256 + n++);
      to_byte[to_cp[b]] = uint8_t(b);
    }
  }
};
const ByteMap& byte_map() {
  static const ByteMap map;
  return map;
}

//! Length of the contraction ('s 't 're 've 'm 'll 'd) at cp[i], or 0; Llama-3/Qwen2 match it
//! case-insensitively, GPT-2 not.
std::size_t contraction_length(const std::vector<uint32_t>& cp, std::size_t i, std::size_t end,
                               bool ignore_case) {
  if (cp[i] != '\'' || i + 1 >= end) return 0;
  auto fold = [&](uint32_t c) { return ignore_case && c >= 'A' && c <= 'Z' ? c + 32 : c; };
  const uint32_t a = fold(cp[i + 1]), b = i + 2 < end ? fold(cp[i + 2]) : 0;
  if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
  if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
  return 0;
}

//! Splits code points [begin, end) with the GPT-2 regex; emits [start, stop) pairs.
void gpt2_split(const std::vector<uint32_t>& cp, std::size_t begin, std::size_t end,
                std::vector<std::pair<std::size_t, std::size_t>>* out) {
  std::size_t i = begin;
  auto is_other = [&](uint32_t c) { return !is_space(c) && !is_letter(c) && !is_number(c); };
  while (i < end) {
    if (const std::size_t len = contraction_length(cp, i, end, /*ignore_case=*/false)) {
      out->emplace_back(i, i + len);
      i += len;
      continue;
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

//! Llama-3's Split regex (Qwen2's with max_digits = 1), leftmost-first like the regex engine:
//! (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
//! ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
void llama3_split(const std::vector<uint32_t>& cp, std::size_t begin, std::size_t end,
                  std::size_t max_digits, std::vector<std::pair<std::size_t, std::size_t>>* out) {
  auto is_newline = [](uint32_t c) { return c == '\r' || c == '\n'; };
  auto is_other = [&](uint32_t c) { return !is_space(c) && !is_letter(c) && !is_number(c); };
  std::size_t i = begin;
  while (i < end) {
    if (const std::size_t len = contraction_length(cp, i, end, /*ignore_case=*/true)) {
      out->emplace_back(i, i + len);
      i += len;
      continue;
    }
    {  // [^\r\n\p{L}\p{N}]?\p{L}+
      std::size_t j = i;
      if (!is_letter(cp[j]) && !is_number(cp[j]) && !is_newline(cp[j]) && j + 1 < end &&
          is_letter(cp[j + 1]))
        ++j;
      if (is_letter(cp[j])) {
        std::size_t e = j + 1;
        while (e < end && is_letter(cp[e])) ++e;
        out->emplace_back(i, e);
        i = e;
        continue;
      }
    }
    if (is_number(cp[i])) {  // \p{N}{1,max_digits}
      std::size_t e = i + 1;
      while (e < end && e - i < max_digits && is_number(cp[e])) ++e;
      out->emplace_back(i, e);
      i = e;
      continue;
    }
    {  //  ?[^\s\p{L}\p{N}]+[\r\n]*
      const std::size_t j = cp[i] == ' ' && i + 1 < end ? i + 1 : i;
      if (is_other(cp[j])) {
        std::size_t e = j + 1;
        while (e < end && is_other(cp[e])) ++e;
        while (e < end && is_newline(cp[e])) ++e;
        out->emplace_back(i, e);
        i = e;
        continue;
      }
    }
    if (is_space(cp[i])) {
      std::size_t w = i;
      while (w < end && is_space(cp[w])) ++w;
      std::size_t last_newline = w;
      for (std::size_t k = w; k-- > i;)
        if (is_newline(cp[k])) {
          last_newline = k;
          break;
        }
      std::size_t e = w;  // \s+
      if (last_newline < w)
        e = last_newline + 1;  // \s*[\r\n]+
      else if (w < end && w - i > 1)
        e = w - 1;  // \s+(?!\S): leave one space for the next word
      out->emplace_back(i, e);
      i = e;
      continue;
    }
    out->emplace_back(i, i + 1);  // unreachable for valid classes; keeps progress guaranteed
    ++i;
  }
}

const char kSpaceMark[] = "\xE2\x96\x81";  // U+2581, SentencePiece's visible space

}  // namespace

Status Tokenizer::from_gguf(const GgufFile& f, Tokenizer* out) noexcept {
  try {
    Tokenizer t;
    std::string model;
    PD_RETURN_IF_ERROR(f.get_string("tokenizer.ggml.model", &model));
    if (model != "gpt2")
      return Status(StatusCode::kUnsupported,
                    "tokenizer: model '%s' is not supported (gpt2 byte-level BPE)",
                    Quoted(model, 40).c_str());
    std::string pre = "default";
    if (f.find("tokenizer.ggml.pre")) PD_RETURN_IF_ERROR(f.get_string("tokenizer.ggml.pre", &pre));
    if (pre == "smollm")
      t.pre_ = Pre::kSmolLM;
    else if (pre == "gpt2" || pre == "default")
      t.pre_ = Pre::kGpt2;
    else
      return Status(StatusCode::kUnsupported,
                    "tokenizer: pre-tokenizer '%s' is not supported (smollm, gpt2)",
                    Quoted(pre, 40).c_str());
    PD_RETURN_IF_ERROR(f.get_strings("tokenizer.ggml.tokens", &t.tokens_));
    if (t.tokens_.empty() || t.tokens_.size() > INT32_MAX)
      return Status(StatusCode::kCorruptFile, "tokenizer: empty vocabulary");
    std::vector<int64_t> types;
    if (f.find("tokenizer.ggml.token_type"))
      PD_RETURN_IF_ERROR(f.get_ints("tokenizer.ggml.token_type", &types));
    if (!types.empty() && types.size() != t.tokens_.size())
      return Status(StatusCode::kCorruptFile, "tokenizer: %zu token types for %zu tokens",
                    types.size(), t.tokens_.size());
    t.types_.assign(t.tokens_.size(), 1);
    for (std::size_t i = 0; i < types.size(); ++i) t.types_[i] = int32_t(types[i]);
    for (std::size_t i = 0; i < t.tokens_.size(); ++i) {
      t.ids_.emplace(t.tokens_[i], int32_t(i));
      if ((t.types_[i] == 3 || t.types_[i] == 4) && !t.tokens_[i].empty())
        t.specials_.push_back(int32_t(i));
    }
    std::stable_sort(t.specials_.begin(), t.specials_.end(), [&](int32_t a, int32_t b) {
      return t.tokens_[std::size_t(a)].size() > t.tokens_[std::size_t(b)].size();
    });
    std::vector<std::string> merges;
    PD_RETURN_IF_ERROR(f.get_strings("tokenizer.ggml.merges", &merges));
    for (std::size_t r = 0; r < merges.size(); ++r) {
      if (merges[r].find(' ') == std::string::npos)
        return Status(StatusCode::kCorruptFile, "tokenizer: merge %zu ('%s') has no space", r,
                      Quoted(merges[r], 40).c_str());
      t.merge_rank_.emplace(merges[r], int32_t(r));
    }
    int64_t v = -1;
    if (f.find("tokenizer.ggml.bos_token_id"))
      PD_RETURN_IF_ERROR(f.get_int("tokenizer.ggml.bos_token_id", &v));
    t.bos_ = int32_t(v);
    v = -1;
    if (f.find("tokenizer.ggml.eos_token_id"))
      PD_RETURN_IF_ERROR(f.get_int("tokenizer.ggml.eos_token_id", &v));
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
  if (ignore_merges_) {  // Llama-3: a pre-token that is a vocabulary entry is one token
    const auto it = ids_.find(word);
    if (it != ids_.end()) {
      ids->push_back(it->second);
      return;
    }
  }
  // Symbols: the word's code points (SentencePiece-style: unknown ones as <0xXX> byte tokens), in
  // a linked list; merges by rank, ties to the leftmost, through a heap (O(n log n), as
  // `tokenizers` does it).
  struct Symbol {
    std::string text;
    int prev, next;
    uint32_t version;
    bool alive;
  };
  std::vector<Symbol> sym;
  std::vector<uint32_t> cps;
  std::vector<std::size_t> offs;
  decode_utf8(word, &cps, &offs);
  for (std::size_t i = 0; i < cps.size(); ++i) {
    std::string c = word.substr(offs[i], offs[i + 1] - offs[i]);
    if (!byte_level_ && ids_.find(c) == ids_.end()) {
      std::vector<std::string> bytes;
      for (unsigned char byte : c) {
        char name[8];
        std::snprintf(name, sizeof name, "<0x%02X>", byte);
        if (ids_.find(name) == ids_.end()) break;
        bytes.emplace_back(name);
      }
      if (bytes.size() == c.size()) {
        for (auto& b : bytes) sym.push_back({std::move(b), 0, 0, 0, true});
        continue;
      }
    }
    sym.push_back({std::move(c), 0, 0, 0, true});
  }
  for (std::size_t i = 0; i < sym.size(); ++i) {
    sym[i].prev = int(i) - 1;
    sym[i].next = i + 1 < sym.size() ? int(i + 1) : -1;
  }
  struct Pair {
    int32_t rank;
    int left, right;
    uint32_t left_version, right_version;
    bool operator>(const Pair& o) const { return rank != o.rank ? rank > o.rank : left > o.left; }
  };
  std::priority_queue<Pair, std::vector<Pair>, std::greater<Pair>> heap;
  auto push_pair = [&](int left) {
    const int right = sym[std::size_t(left)].next;
    if (right < 0) return;
    const auto it =
        merge_rank_.find(sym[std::size_t(left)].text + " " + sym[std::size_t(right)].text);
    if (it != merge_rank_.end())
      heap.push({it->second, left, right, sym[std::size_t(left)].version,
                 sym[std::size_t(right)].version});
  };
  for (std::size_t i = 0; i + 1 < sym.size(); ++i) push_pair(int(i));
  while (!heap.empty()) {
    const Pair p = heap.top();
    heap.pop();
    Symbol &l = sym[std::size_t(p.left)], &r = sym[std::size_t(p.right)];
    if (!l.alive || !r.alive || l.next != p.right || l.version != p.left_version ||
        r.version != p.right_version)
      continue;
    l.text += r.text;
    ++l.version;
    r.alive = false;
    l.next = r.next;
    if (r.next >= 0) sym[std::size_t(r.next)].prev = p.left;
    if (l.prev >= 0) push_pair(l.prev);
    push_pair(p.left);
  }
  bool last_was_unk = false;
  for (const Symbol& s : sym) {
    if (!s.alive) continue;
    const auto it = ids_.find(s.text);
    if (it != ids_.end()) {
      ids->push_back(it->second);
      last_was_unk = false;
    } else if (!byte_level_) {  // SentencePiece-style: <unk>, consecutive ones fused
      if (unk_ >= 0 && !last_was_unk) ids->push_back(unk_);
      last_was_unk = true;
    } else {  // not in the vocabulary: fall back to its single byte-level symbols
      std::vector<uint32_t> c2;
      std::vector<std::size_t> o2;
      decode_utf8(s.text, &c2, &o2);
      for (std::size_t i = 0; i < c2.size(); ++i) {
        const auto one = ids_.find(s.text.substr(o2[i], o2[i + 1] - o2[i]));
        if (one != ids_.end()) ids->push_back(one->second);
      }
    }
  }
}

void Tokenizer::encode_sentencepiece(const std::string& segment, bool first,
                                     std::vector<int32_t>* ids) const {
  if (segment.empty()) return;
  std::string norm;
  for (char ch : segment) {
    if (ch == ' ')
      norm += kSpaceMark;
    else
      norm.push_back(ch);
  }
  const bool starts_with_mark = norm.compare(0, 3, kSpaceMark) == 0;
  const bool prepend = prefix_ == Prefix::kAlways ||
                       (prefix_ == Prefix::kMetaspaceAlways && !starts_with_mark) ||
                       (prefix_ == Prefix::kMetaspaceFirst && first && !starts_with_mark);
  if (prepend) norm.insert(0, kSpaceMark);
  bpe(norm, ids);  // one word: merges may join marks ("▁▁" pieces), as the reference does
}

Status Tokenizer::encode(const std::string& text, std::vector<int32_t>* ids,
                         bool parse_special) const noexcept {
  try {
    ids->clear();
    std::vector<uint32_t> cps;
    std::vector<std::size_t> offs;
    if (!decode_utf8(text, &cps, &offs))
      return Status(StatusCode::kInvalidArgument, "tokenizer: the text is not valid UTF-8");
    const ByteMap& bm = byte_map();
    auto encode_segment = [&](std::size_t cbegin, std::size_t cend) {
      if (!byte_level_) {
        encode_sentencepiece(text.substr(offs[cbegin], offs[cend] - offs[cbegin]),
                             offs[cbegin] == 0, ids);
        return;
      }
      // Pieces: SmolLM isolates every number code point first, then the GPT-2 regex runs on each
      // piece.
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
      for (const auto& p : pieces) {
        if (pre_ == Pre::kLlama3 || pre_ == Pre::kQwen2)
          llama3_split(cps, p.first, p.second, pre_ == Pre::kLlama3 ? 3 : 1, &words);
        else
          gpt2_split(cps, p.first, p.second, &words);
      }
      for (const auto& w : words) {
        std::string mapped;
        for (std::size_t byte = offs[w.first]; byte < offs[w.second]; ++byte)
          append_utf8(bm.to_cp[uint8_t(text[byte])], &mapped);
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

Status Tokenizer::decode(const std::vector<int32_t>& ids, std::string* text,
                         bool skip_special) const noexcept {
  try {
    text->clear();
    const ByteMap& bm = byte_map();
    for (int32_t id : ids) {
      if (id < 0 || id >= int32_t(tokens_.size()))
        return Status(StatusCode::kInvalidArgument, "tokenizer: id %d is outside the vocabulary",
                      id);
      if (is_special(id)) {
        if (!skip_special) *text += tokens_[std::size_t(id)];
        continue;
      }
      const std::string& tok = tokens_[std::size_t(id)];
      if (!byte_level_) {  // SentencePiece-style: <0xXX> is a byte, "▁" a space
        unsigned byte = 0;
        if (decode_bytes_ && tok.size() == 6 && tok.compare(0, 3, "<0x") == 0 && tok[5] == '>' &&
            std::sscanf(tok.c_str() + 3, "%2x", &byte) == 1) {
          text->push_back(char(byte));
          continue;
        }
        for (std::size_t k = 0; k < tok.size();) {
          if (tok.compare(k, 3, kSpaceMark) == 0) {
            text->push_back(' ');
            k += 3;
          } else {
            text->push_back(tok[k++]);
          }
        }
        continue;
      }
      std::vector<uint32_t> cps;
      std::vector<std::size_t> offs;
      decode_utf8(tok, &cps, &offs);
      for (uint32_t cp : cps) {
        const auto it = bm.to_byte.find(cp);
        if (it != bm.to_byte.end())
          text->push_back(char(it->second));
        else
          append_utf8(cp, text);
      }
    }
    if (strip_leading_space_ && !text->empty() && (*text)[0] == ' ') text->erase(0, 1);
    return Status::ok();
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kOutOfMemory, "tokenizer: out of host memory");
  }
}

}  // namespace promptdistill
