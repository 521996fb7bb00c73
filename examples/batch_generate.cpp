// SPDX-License-Identifier: Apache-2.0
// Two prompts of different lengths through PromptDistill in one batch, then greedy decoding,
// with the library API only (no CLI): on the GPU (cuda::BatchSession, bf16) when the build has CUDA
// and a device is present, on the CPU reference ops (ref::BatchSession) otherwise.
//
//   promptdistill.example.batch_generate [MODEL.gguf]   (default: the embedded SmolLM2)
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "promptdistill/batch_session.h"
#include "promptdistill/gguf.h"
#include "promptdistill/model.h"
#include "promptdistill/tokenizer.h"

namespace pd = promptdistill;

namespace {

template <class Session>
int run(const pd::ModelWeights& w, const pd::Tokenizer& tok,
        const std::vector<std::vector<int32_t>>& prompts) {
  std::unique_ptr<Session> session;
  pd::Status s = Session::create(&w, pd::BatchSessionOptions{}, nullptr, &session);
  if (!s) return std::fprintf(stderr, "error: %s\n", s.message()), 1;
  pd::PipelineConfig cfg;
  cfg.method = pd::PipelineMethod::kPromptDistill;
  cfg.selection_layers = {20};  // SmolLM2 has 30 layers
  cfg.n_topks = {24};
  cfg.cache_truncation_end = 1;
  std::vector<pd::PrefillResult> res;
  if (!(s = session->prefill(prompts, cfg, &res)))
    return std::fprintf(stderr, "error: %s\n", s.message()), 1;
  std::vector<int32_t> first;
  for (const auto& r : res) first.push_back(r.first_token);
  std::vector<std::vector<int32_t>> out;
  double ms = 0;
  if (!(s = session->generate(first, 24, w.config.eos_tokens, &out, &ms)))
    return std::fprintf(stderr, "error: %s\n", s.message()), 1;
  for (std::size_t b = 0; b < prompts.size(); ++b) {
    std::string text;
    tok.decode(out[b], &text, /*skip_special=*/true);
    std::printf("request %zu: %lld prompt tokens, kept %lld; TTFT %.0f ms\n  -> %s\n", b,
                (long long)res[b].prompt_tokens, (long long)res[b].retained[0], res[b].ttft_ms,
                text.c_str());
  }
  std::printf("decode %.1f ms per batched step, peak memory %.1f MiB (%s)\n", ms,
              double(session->peak_memory_bytes()) / 1048576.0, Session::backend_name());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string path = argc > 1 ? argv[1] : PD_DEFAULT_MODEL;
  pd::ModelWeights w;
  pd::Status s = pd::load_gguf_model(path, &w);
  if (!s) return std::fprintf(stderr, "error: %s (run scripts/fetch_model.sh)\n", s.message()), 1;
  pd::GgufFile f;
  pd::Tokenizer tok;
  if (!(s = pd::GgufFile::open(path, &f)) || !(s = pd::Tokenizer::from_gguf(f, &tok)))
    return std::fprintf(stderr, "error: %s\n", s.message()), 1;
  std::vector<std::vector<int32_t>> prompts(2);
  tok.encode(
      "<|im_start|>user\nThe capital of France is Paris. The capital of Italy is Rome. The capital "
      "of Spain is "
      "Madrid. What is the capital of Italy?<|im_end|>\n<|im_start|>assistant\n",
      &prompts[0]);
  tok.encode(
      "<|im_start|>user\nName three colours of the rainbow.<|im_end|>\n<|im_start|>assistant\n",
      &prompts[1]);
#if defined(PD_EXAMPLE_CUDA)
  if (pd::cuda::device_available()) return run<pd::cuda::BatchSession>(w, tok, prompts);
#endif
  return run<pd::ref::BatchSession>(w, tok, prompts);
}
