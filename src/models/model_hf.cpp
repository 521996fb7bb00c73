// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
//! Model weights from a Hugging Face folder: config.json + model.safetensors (or sharded with
//! model.safetensors.index.json), for LlamaForCausalLM, Qwen2ForCausalLM and Phi3ForCausalLM.

#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string_view>

#include <nlohmann/json.hpp>

#include "promptdistill/model.h"
#include "promptdistill/safetensors.h"

namespace promptdistill {
namespace {

using Json = nlohmann::json;

Status read_json(const std::string& path, Json* out) {
  std::ifstream in(path);
  if (!in) return Status(StatusCode::kIoError, "cannot open '%.180s'", path.c_str());
  std::stringstream ss;
  ss << in.rdbuf();
  *out = Json::parse(ss.str(), nullptr, false);
  if (out->is_discarded() || !out->is_object())
    return Status(StatusCode::kCorruptFile, "%.180s: not a JSON object", path.c_str());
  return Status::ok();
}

template <class T>
Status get(const Json& j, const char* key, T* out, bool required = true) {
  if (!j.contains(key) || j[key].is_null()) {
    if (required) return Status(StatusCode::kCorruptFile, "config.json: missing '%s'", key);
    return Status::ok();
  }
  try {
    *out = j[key].get<T>();
  } catch (const std::exception&) {
    return Status(StatusCode::kCorruptFile, "config.json: '%s' has the wrong type", key);
  }
  return Status::ok();
}

Status read_config(const Json& j, ModelConfig* c) {
  std::string arch;
  if (j.contains("architectures") && j["architectures"].is_array() && !j["architectures"].empty() &&
      j["architectures"][0].is_string())
    arch = j["architectures"][0].get<std::string>();
  if (arch == "LlamaForCausalLM")
    c->arch = Architecture::kLlama;
  else if (arch == "Qwen2ForCausalLM")
    c->arch = Architecture::kQwen2;
  else if (arch == "Phi3ForCausalLM")
    c->arch = Architecture::kPhi3;
  else
    return Status(StatusCode::kUnsupported,
                  "config.json: architecture '%s' is not supported (Llama, Qwen2, Phi3)",
                  Quoted(arch, 60).c_str());
  PD_RETURN_IF_ERROR(get(j, "hidden_size", &c->hidden));
  PD_RETURN_IF_ERROR(get(j, "intermediate_size", &c->intermediate));
  PD_RETURN_IF_ERROR(get(j, "num_hidden_layers", &c->num_layers));
  PD_RETURN_IF_ERROR(get(j, "num_attention_heads", &c->num_heads));
  PD_RETURN_IF_ERROR(get(j, "vocab_size", &c->vocab));
  c->num_kv_heads = c->num_heads;
  PD_RETURN_IF_ERROR(get(j, "num_key_value_heads", &c->num_kv_heads, false));
  if (c->num_heads < 1)
    return Status(StatusCode::kCorruptFile, "config.json: num_attention_heads must be >= 1");
  c->head_dim = c->hidden / c->num_heads;
  PD_RETURN_IF_ERROR(get(j, "head_dim", &c->head_dim, false));
  c->rms_eps = 1e-6;
  PD_RETURN_IF_ERROR(get(j, "rms_norm_eps", &c->rms_eps, false));
  c->max_positions = 4096;
  PD_RETURN_IF_ERROR(get(j, "max_position_embeddings", &c->max_positions, false));
  PD_RETURN_IF_ERROR(get(j, "tie_word_embeddings", &c->tied_embeddings, false));
  bool bias = c->arch == Architecture::kQwen2;
  PD_RETURN_IF_ERROR(get(j, "attention_bias", &bias, false));
  c->qkv_bias = bias;
  int64_t bos = -1;
  PD_RETURN_IF_ERROR(get(j, "bos_token_id", &bos, false));
  c->bos_token = int32_t(bos);
  if (j.contains("eos_token_id") && j["eos_token_id"].is_number_integer())
    c->eos_tokens = {j["eos_token_id"].get<int32_t>()};
  if (j.contains("eos_token_id") && j["eos_token_id"].is_array())
    for (const auto& e : j["eos_token_id"])
      if (e.is_number_integer()) c->eos_tokens.push_back(e.get<int32_t>());

  // RoPE: transformers < 5 writes rope_theta + rope_scaling, >= 5 writes rope_parameters.
  const Json none = Json::object();
  const Json& rp = j.contains("rope_parameters") && j["rope_parameters"].is_object()
                       ? j["rope_parameters"]
                   : j.contains("rope_scaling") && j["rope_scaling"].is_object() ? j["rope_scaling"]
                                                                                 : none;
  c->rope.theta = 10000.0;
  PD_RETURN_IF_ERROR(get(j, "rope_theta", &c->rope.theta, false));
  PD_RETURN_IF_ERROR(get(rp, "rope_theta", &c->rope.theta, false));
  std::string type = "default";
  PD_RETURN_IF_ERROR(get(rp, "type", &type, false));
  PD_RETURN_IF_ERROR(get(rp, "rope_type", &type, false));
  double partial = 1.0;
  PD_RETURN_IF_ERROR(get(j, "partial_rotary_factor", &partial, false));
  PD_RETURN_IF_ERROR(get(rp, "partial_rotary_factor", &partial, false));
  if (partial != 1.0)
    return Status(StatusCode::kUnsupported,
                  "config.json: partial rotary embeddings are not supported");
  RopeConfig& r = c->rope;
  PD_RETURN_IF_ERROR(get(j, "original_max_position_embeddings", &r.original_max_positions, false));
  PD_RETURN_IF_ERROR(get(rp, "original_max_position_embeddings", &r.original_max_positions, false));
  if (type == "llama3") {
    r.scaling = RopeScaling::kLlama3;
    PD_RETURN_IF_ERROR(get(rp, "factor", &r.factor));
    PD_RETURN_IF_ERROR(get(rp, "low_freq_factor", &r.low_freq_factor));
    PD_RETURN_IF_ERROR(get(rp, "high_freq_factor", &r.high_freq_factor));
  } else if (type == "longrope" || type == "su") {
    r.scaling = RopeScaling::kLongRope;
    PD_RETURN_IF_ERROR(get(rp, "short_factor", &r.short_factor));
    PD_RETURN_IF_ERROR(get(rp, "long_factor", &r.long_factor));
    PD_RETURN_IF_ERROR(get(rp, "attention_factor", &r.attention_factor, false));
    if (r.original_max_positions < 1)
      return Status(StatusCode::kCorruptFile,
                    "config.json: LongRoPE needs original_max_position_embeddings");
  } else if (type != "default") {
    return Status(StatusCode::kUnsupported,
                  "config.json: RoPE type '%s' is not supported (default, llama3, longrope)",
                  Quoted(type, 40).c_str());
  }
  return c->validate();
}

//! The shards of a folder and which one holds each tensor.
struct Shards {
  std::map<std::string, std::unique_ptr<SafetensorsFile>> files;
  std::map<std::string, SafetensorsFile*> where;

  Status load(const std::string& dir) {
    std::vector<std::string> names;
    Json index;
    std::ifstream probe(dir + "/model.safetensors.index.json");
    if (probe) {
      PD_RETURN_IF_ERROR(read_json(dir + "/model.safetensors.index.json", &index));
      if (!index.contains("weight_map") || !index["weight_map"].is_object())
        return Status(StatusCode::kCorruptFile, "model.safetensors.index.json: missing weight_map");
      for (auto it = index["weight_map"].begin(); it != index["weight_map"].end(); ++it) {
        if (!it.value().is_string())
          return Status(StatusCode::kCorruptFile,
                        "model.safetensors.index.json: bad entry for '%s'",
                        Quoted(it.key(), 80).c_str());
        const std::string shard = it.value().get<std::string>();
        if (shard.find('/') != std::string::npos || shard.find("..") != std::string::npos)
          return Status(StatusCode::kCorruptFile,
                        "model.safetensors.index.json: shard name '%s' leaves the folder",
                        Quoted(shard, 80).c_str());
        if (!files.count(shard)) {
          auto f = std::make_unique<SafetensorsFile>();
          PD_RETURN_IF_ERROR(SafetensorsFile::open(dir + "/" + shard, f.get()));
          files[shard] = std::move(f);
        }
        if (files[shard]->find(it.key()) == nullptr)
          return Status(StatusCode::kCorruptFile, "%s: the index lists '%s' but the shard lacks it",
                        Quoted(shard, 80).c_str(), Quoted(it.key(), 80).c_str());
        where[it.key()] = files[shard].get();
      }
    } else {
      auto f = std::make_unique<SafetensorsFile>();
      PD_RETURN_IF_ERROR(SafetensorsFile::open(dir + "/model.safetensors", f.get()));
      for (const auto& t : f->tensors()) where[t.name] = f.get();
      files["model.safetensors"] = std::move(f);
    }
    return Status::ok();
  }

  Status tensor(const std::string& name, int64_t rows, int64_t cols, std::vector<float>* out) {
    const auto it = where.find(name);
    if (it == where.end())
      return Status(StatusCode::kCorruptFile, "safetensors: missing tensor '%s'",
                    Quoted(name, 100).c_str());
    const SafetensorInfo* t = it->second->find(name);
    const bool ok = (rows == 1 && t->shape.size() == 1 && t->shape[0] == cols) ||
                    (t->shape.size() == 2 && t->shape[0] == rows && t->shape[1] == cols);
    if (!ok)
      return Status(StatusCode::kCorruptFile,
                    "safetensors: tensor '%s' has the wrong shape (expected [%lld, %lld])",
                    Quoted(name, 100).c_str(), (long long)rows, (long long)cols);
    out->resize(std::size_t(rows * cols));
    return it->second->to_f32(*t, out->data());
  }
};

}  // namespace

Status load_hf_model(const std::string& dir, ModelWeights* out) noexcept {
  try {
    Json j;
    PD_RETURN_IF_ERROR(read_json(dir + "/config.json", &j));
    ModelWeights w;
    ModelConfig& c = w.config;
    PD_RETURN_IF_ERROR(read_config(j, &c));
    Shards s;
    PD_RETURN_IF_ERROR(s.load(dir));
    const int64_t hd = c.hidden, qd = c.num_heads * c.head_dim, kvd = c.num_kv_heads * c.head_dim,
                  I = c.intermediate;
    PD_RETURN_IF_ERROR(s.tensor("model.embed_tokens.weight", c.vocab, hd, &w.embed));
    PD_RETURN_IF_ERROR(s.tensor("model.norm.weight", 1, hd, &w.final_norm));
    if (!c.tied_embeddings) PD_RETURN_IF_ERROR(s.tensor("lm_head.weight", c.vocab, hd, &w.lm_head));
    w.layers.resize(std::size_t(c.num_layers));
    for (int64_t l = 0; l < c.num_layers; ++l) {
      LayerWeights& L = w.layers[std::size_t(l)];
      const std::string p = "model.layers." + std::to_string(l) + ".";
      PD_RETURN_IF_ERROR(s.tensor(p + "input_layernorm.weight", 1, hd, &L.attn_norm));
      PD_RETURN_IF_ERROR(s.tensor(p + "post_attention_layernorm.weight", 1, hd, &L.mlp_norm));
      PD_RETURN_IF_ERROR(s.tensor(p + "self_attn.o_proj.weight", hd, qd, &L.wo));
      PD_RETURN_IF_ERROR(s.tensor(p + "mlp.down_proj.weight", hd, I, &L.w_down));
      if (c.arch == Architecture::kPhi3) {
        std::vector<float> qkv, gate_up;
        PD_RETURN_IF_ERROR(s.tensor(p + "self_attn.qkv_proj.weight", qd + 2 * kvd, hd, &qkv));
        L.wq.assign(qkv.begin(), qkv.begin() + qd * hd);
        L.wk.assign(qkv.begin() + qd * hd, qkv.begin() + (qd + kvd) * hd);
        L.wv.assign(qkv.begin() + (qd + kvd) * hd, qkv.end());
        PD_RETURN_IF_ERROR(s.tensor(p + "mlp.gate_up_proj.weight", 2 * I, hd, &gate_up));
        L.w_gate.assign(gate_up.begin(), gate_up.begin() + I * hd);
        L.w_up.assign(gate_up.begin() + I * hd, gate_up.end());
      } else {
        PD_RETURN_IF_ERROR(s.tensor(p + "self_attn.q_proj.weight", qd, hd, &L.wq));
        PD_RETURN_IF_ERROR(s.tensor(p + "self_attn.k_proj.weight", kvd, hd, &L.wk));
        PD_RETURN_IF_ERROR(s.tensor(p + "self_attn.v_proj.weight", kvd, hd, &L.wv));
        PD_RETURN_IF_ERROR(s.tensor(p + "mlp.gate_proj.weight", I, hd, &L.w_gate));
        PD_RETURN_IF_ERROR(s.tensor(p + "mlp.up_proj.weight", I, hd, &L.w_up));
      }
      if (c.qkv_bias) {
        PD_RETURN_IF_ERROR(s.tensor(p + "self_attn.q_proj.bias", 1, qd, &L.bq));
        PD_RETURN_IF_ERROR(s.tensor(p + "self_attn.k_proj.bias", 1, kvd, &L.bk));
        PD_RETURN_IF_ERROR(s.tensor(p + "self_attn.v_proj.bias", 1, kvd, &L.bv));
      }
    }
    *out = std::move(w);
    return Status::ok();
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kOutOfMemory, "out of host memory loading '%.180s'", dir.c_str());
  } catch (const std::exception& e) {
    return Status(StatusCode::kCorruptFile, "%.120s: %s", dir.c_str(),
                  Quoted(std::string_view(e.what()), 100).c_str());
  }
}

}  // namespace promptdistill
