// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
//! Tokenizer::from_hf_json: a Hugging Face tokenizer.json of the Llama family (byte-level BPE of
//! SmolLM2 / Llama-3 / Qwen2 / GPT-2, or SentencePiece-style BPE of Llama-2 / Phi-3), recognised
//! by its pre-tokenizer and normalizer; anything else is refused with a message naming it.

#include <algorithm>
#include <fstream>
#include <sstream>
#include <string_view>

#include <nlohmann/json.hpp>

#include "promptdistill/tokenizer.h"

namespace promptdistill {
namespace {

using Json = nlohmann::json;

// The Split regexes of the families we implement by hand (tokenizer.cpp).
const char kLlama3Regex[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const char kQwen2Regex[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

std::string type_of(const Json& j) {
  return j.is_object() && j.contains("type") && j["type"].is_string() ? j["type"].get<std::string>()
                                                                      : "";
}

//! The steps of a Sequence (or the single step itself).
std::vector<Json> steps_of(const Json& j, const char* list_key) {
  if (j.is_null()) return {};
  if (type_of(j) == "Sequence" && j.contains(list_key) && j[list_key].is_array())
    return j[list_key].get<std::vector<Json>>();
  return {j};
}

bool read_file(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::stringstream ss;
  ss << in.rdbuf();
  *out = ss.str();
  return true;
}

}  // namespace

Status Tokenizer::from_hf_json(const std::string& path, Tokenizer* out) noexcept {
  try {
    std::string text;
    if (!read_file(path, &text))
      return Status(StatusCode::kIoError, "tokenizer.json: cannot open %s", path.c_str());
    const Json j = Json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object())
      return Status(StatusCode::kCorruptFile, "tokenizer.json: %s is not valid JSON", path.c_str());
    if (!j.contains("model") || type_of(j["model"]) != "BPE")
      return Status(
          StatusCode::kUnsupported, "tokenizer.json: model type '%s' is not supported (BPE)",
          Quoted(j.contains("model") ? type_of(j["model"]) : std::string("none"), 40).c_str());
    const Json& model = j["model"];
    if (!model.contains("vocab") || !model["vocab"].is_object() || !model.contains("merges") ||
        !model["merges"].is_array())
      return Status(StatusCode::kCorruptFile,
                    "tokenizer.json: the BPE model needs a vocab object and a merges list");

    Tokenizer t;
    // Pre-tokenizer and normalizer decide the family.
    const std::vector<Json> pre = steps_of(j.value("pre_tokenizer", Json()), "pretokenizers");
    const std::vector<Json> norm = steps_of(j.value("normalizer", Json()), "normalizers");
    auto is_byte_level = [](const Json& s) { return type_of(s) == "ByteLevel"; };
    if (pre.size() == 1 && is_byte_level(pre[0]) && pre[0].value("use_regex", true)) {
      t.pre_ = Pre::kGpt2;
    } else if (pre.size() == 2 && type_of(pre[0]) == "Digits" &&
               pre[0].value("individual_digits", false) && is_byte_level(pre[1])) {
      t.pre_ = Pre::kSmolLM;
    } else if (pre.size() == 2 && type_of(pre[0]) == "Split" && is_byte_level(pre[1]) &&
               !pre[1].value("use_regex", true)) {
      const Json& pattern = pre[0].value("pattern", Json());
      const std::string regex = pattern.is_object() && pattern.contains("Regex")
                                    ? pattern["Regex"].get<std::string>()
                                    : "";
      if (regex == kLlama3Regex)
        t.pre_ = Pre::kLlama3;
      else if (regex == kQwen2Regex)
        t.pre_ = Pre::kQwen2;
      else
        return Status(StatusCode::kUnsupported,
                      "tokenizer.json: Split regex '%s' is not one we implement (Llama-3, Qwen2)",
                      Quoted(regex, 80).c_str());
      if (pre[0].value("behavior", "") != "Isolated")
        return Status(StatusCode::kUnsupported, "tokenizer.json: Split behaviour must be Isolated");
    } else if (pre.empty() && norm.size() == 2 && type_of(norm[0]) == "Prepend" &&
               norm[0].value("prepend", "") == "\xE2\x96\x81" && type_of(norm[1]) == "Replace") {
      t.byte_level_ = false;
      t.prefix_ = Prefix::kAlways;
    } else if (pre.size() == 1 && type_of(pre[0]) == "Metaspace" &&
               pre[0].value("replacement", "") == "\xE2\x96\x81" && norm.empty()) {
      t.byte_level_ = false;
      const std::string scheme = pre[0].value("prepend_scheme", "always");
      t.prefix_ = scheme == "first"   ? Prefix::kMetaspaceFirst
                  : scheme == "never" ? Prefix::kNone
                                      : Prefix::kMetaspaceAlways;
    } else {
      return Status(
          StatusCode::kUnsupported,
          "tokenizer.json: pre-tokenizer '%s' with normalizer '%s' is not supported (byte-level "
          "BPE of "
          "GPT-2/SmolLM2/Llama-3/Qwen2, or SentencePiece-style BPE)",
          Quoted(j.value("pre_tokenizer", Json()).is_null() ? "none" : type_of(j["pre_tokenizer"]),
                 40)
              .c_str(),
          Quoted(j.value("normalizer", Json()).is_null() ? "none" : type_of(j["normalizer"]), 40)
              .c_str());
    }
    if (!t.byte_level_ && !model.value("byte_fallback", false))
      return Status(
          StatusCode::kUnsupported,
          "tokenizer.json: SentencePiece-style BPE without byte_fallback is not supported");
    t.ignore_merges_ = model.value("ignore_merges", false);

    // Vocabulary and added tokens; ids may leave holes (filled with empty, never-matched tokens).
    int64_t size = 0;
    for (const auto& kv : model["vocab"].items()) {
      if (!kv.value().is_number_integer() || kv.value().get<int64_t>() < 0 ||
          kv.value().get<int64_t>() >= INT32_MAX)
        return Status(StatusCode::kCorruptFile, "tokenizer.json: token '%s' has no valid id",
                      Quoted(kv.key(), 40).c_str());
      size = std::max<int64_t>(size, kv.value().get<int64_t>() + 1);
    }
    const Json added = j.value("added_tokens", Json::array());
    for (const Json& a : added) {
      if (!a.is_object() || !a.contains("id") || !a["id"].is_number_integer() ||
          !a.contains("content") || !a["content"].is_string() || a["id"].get<int64_t>() < 0 ||
          a["id"].get<int64_t>() >= INT32_MAX)
        return Status(StatusCode::kCorruptFile,
                      "tokenizer.json: an added token lacks a valid id or content");
      size = std::max<int64_t>(size, a["id"].get<int64_t>() + 1);
    }
    if (size == 0) return Status(StatusCode::kCorruptFile, "tokenizer.json: empty vocabulary");
    t.tokens_.assign(std::size_t(size), std::string());
    t.types_.assign(std::size_t(size), 1);
    for (const auto& kv : model["vocab"].items())
      t.tokens_[std::size_t(kv.value().get<int64_t>())] = kv.key();
    for (const Json& a : added) {
      const std::size_t id = std::size_t(a["id"].get<int64_t>());
      t.tokens_[id] = a["content"].get<std::string>();
      t.types_[id] =
          a.value("special", false) ? 3 : 4;  // control / user-defined, as GGUF types them
    }
    for (std::size_t i = 0; i < t.tokens_.size(); ++i) {
      if (t.tokens_[i].empty()) continue;
      t.ids_.emplace(t.tokens_[i], int32_t(i));
      if (t.types_[i] == 3 || t.types_[i] == 4) t.specials_.push_back(int32_t(i));
    }
    std::stable_sort(t.specials_.begin(), t.specials_.end(), [&](int32_t a, int32_t b) {
      return t.tokens_[std::size_t(a)].size() > t.tokens_[std::size_t(b)].size();
    });
    // Merges: "left right" strings (older files) or [left, right] pairs.
    const Json& merges = model["merges"];
    for (std::size_t r = 0; r < merges.size(); ++r) {
      const Json& m = merges[r];
      std::string key;
      if (m.is_string())
        key = m.get<std::string>();
      else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string())
        key = m[0].get<std::string>() + " " + m[1].get<std::string>();
      if (key.find(' ') == std::string::npos)
        return Status(StatusCode::kCorruptFile,
                      "tokenizer.json: merge %zu is neither \"a b\" nor [a, b]", r);
      t.merge_rank_.emplace(key, int32_t(r));
    }
    if (model.contains("unk_token") && model["unk_token"].is_string()) {
      const auto it = t.ids_.find(model["unk_token"].get<std::string>());
      if (it != t.ids_.end()) t.unk_ = it->second;
    }
    // Decoder: SentencePiece-style files turn <0xXX> into bytes (ByteFallback) and strip the
    // first leading space (Strip, or Metaspace with a prepend scheme).
    if (!t.byte_level_) {
      const std::vector<Json> dec = steps_of(j.value("decoder", Json()), "decoders");
      t.decode_bytes_ = std::any_of(dec.begin(), dec.end(),
                                    [](const Json& d) { return type_of(d) == "ByteFallback"; });
      t.strip_leading_space_ = std::any_of(dec.begin(), dec.end(), [](const Json& d) {
        return (type_of(d) == "Strip" && d.value("start", 0) >= 1) ||
               (type_of(d) == "Metaspace" && d.value("prepend_scheme", "always") != "never");
      });
    }
    // bos/eos: tokenizer_config.json next to tokenizer.json (strings or {"content": ...}).
    const std::string config_path =
        path.substr(0, path.find_last_of('/') + 1) + "tokenizer_config.json";
    std::string config_text;
    if (read_file(config_path, &config_text)) {
      const Json cfg = Json::parse(config_text, nullptr, false);
      auto id_of = [&](const char* key) -> int32_t {
        if (cfg.is_discarded() || !cfg.is_object() || !cfg.contains(key)) return -1;
        const Json& v = cfg[key];
        const std::string name = v.is_string()   ? v.get<std::string>()
                                 : v.is_object() ? v.value("content", "")
                                                 : "";
        const auto it = t.ids_.find(name);
        return it == t.ids_.end() ? -1 : it->second;
      };
      t.bos_ = id_of("bos_token");
      t.eos_ = id_of("eos_token");
    }
    *out = std::move(t);
    return Status::ok();
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kOutOfMemory, "tokenizer.json: out of host memory");
  } catch (const std::exception& e) {
    return Status(StatusCode::kCorruptFile, "tokenizer.json: %s",
                  Quoted(std::string_view(e.what()), 120).c_str());
  }
}

}  // namespace promptdistill
