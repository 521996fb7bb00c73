// SPDX-License-Identifier: Apache-2.0
// `promptdistill select` end to end: .npy in, JSON out, equal to the library's reference
// selection (Tier A); bad files and options exit non-zero with a one-line error.
#include <doctest/doctest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "promptdistill/promptdistill.h"
#include "support/generators.h"
#include "support/random_model.h"
#include "support/cli_runner.h"
#include "support/temp_dir.h"
#include "tools/json_line.h"

using namespace promptdistill;

namespace {

using Result = pdtest::CliResult;
using pdtest::slurp;

//! The test binary's scratch folder (removed at exit).
const pdtest::TempDir& scratch() {
  static const pdtest::TempDir dir("cli");
  return dir;
}

Result run_cli(const std::string& args) { return pdtest::run_cli_in(scratch(), args); }

std::string tmp(const std::string& name) { return scratch().path(name); }

std::vector<int32_t> ref_select(Method m, const std::vector<float>& q, int64_t Lq,
                                const std::vector<float>& k, int64_t L, int64_t H, int64_t Hkv,
                                int64_t D, int64_t budget, int64_t row) {
  const int64_t R = score_rows(m, HeadGrouping::kPerKvGroup, H, Hkv);
  std::vector<int32_t> lengths{int32_t(L)}, idx(std::size_t(R * L)),
      counts(static_cast<std::size_t>(R));
  SelectArgs<float> a;
  a.config.method = m;
  a.config.budget = budget;
  a.config.window = 4;
  a.q = make_view<const float>(q.data(), 1, Lq, H, D);
  a.k = KvCacheView<const float>::contiguous_bshd(k.data(), 1, L, Hkv, D);
  a.lengths = lengths.data();
  a.max_length = L;
  a.indices = make_view(idx.data(), 1, R, L);
  a.counts = make_view(counts.data(), 1, R);
  HostWorkspace ws;
  REQUIRE(ws.reserve(ref::Select<float>::workspace_size(a)).is_ok());
  REQUIRE(ref::Select<float>::run(a, ws.workspace()).is_ok());
  return std::vector<int32_t>(idx.begin() + row * L,
                              idx.begin() + row * L + counts[std::size_t(row)]);
}

}  // namespace

TEST_CASE("cli/select: JSON output equals the reference selection for every method") {
  const int64_t L = 90, H = 4, Hkv = 2, D = 32;
  const auto k = pdtest::generate<float>(std::size_t(L * Hkv * D), pdtest::Fill::kNormal,
                                         pdtest::mix(pdtest::seed(), 1));
  REQUIRE(write_npy(tmp("k.npy"), DType::kF32, {L, Hkv, D}, k.data()).is_ok());
  for (Method m : {Method::kPromptDistill, Method::kGemFilter, Method::kSnapKV, Method::kH2O}) {
    const int64_t Lq = m == Method::kSnapKV ? 4 : m == Method::kH2O ? L : 1;
    const auto q = pdtest::generate<float>(std::size_t(Lq * H * D), pdtest::Fill::kNormal,
                                           pdtest::mix(pdtest::seed(), 2, uint64_t(m)));
    REQUIRE(write_npy(tmp("q.npy"), DType::kF32, {Lq, H, D}, q.data()).is_ok());
    const auto r = run_cli(std::string("select --method ") + to_string(m) + " --q " + tmp("q.npy") +
                           " --k " + tmp("k.npy") + " --budget 20 --window 4 --json");
    INFO(std::string(to_string(m)));
    CAPTURE(r.err);
    REQUIRE(r.exit_code == 0);
    const auto j = nlohmann::json::parse(r.out);
    CHECK(j["method"] == to_string(m));
    if (m == Method::kPromptDistill || m == Method::kGemFilter) {
      CHECK(j["indices"].get<std::vector<int32_t>>() ==
            ref_select(m, q, Lq, k, L, H, Hkv, D, 20, 0));
      CHECK(j["scores"].size() == std::size_t(L));
      CHECK(j["indices"].size() == (m == Method::kPromptDistill ? 21u : 20u));
    } else {
      REQUIRE(j["indices"].size() == std::size_t(Hkv));
      for (int64_t row = 0; row < Hkv; ++row)
        CHECK(j["indices"][std::size_t(row)].get<std::vector<int32_t>>() ==
              ref_select(m, q, Lq, k, L, H, Hkv, D, 20, row));
    }
  }
  // --topk is --budget's former name: the same selection, with a deprecation warning; --pool none
  // is accepted as in every command.
  const auto q1 = pdtest::generate<float>(std::size_t(H * D), pdtest::Fill::kNormal,
                                          pdtest::mix(pdtest::seed(), 3));
  REQUIRE(write_npy(tmp("q.npy"), DType::kF32, {1, H, D}, q1.data()).is_ok());
  const std::string pd_args =
      "select --method promptdistill --q " + tmp("q.npy") + " --k " + tmp("k.npy") + " --json";
  const auto by_topk = run_cli(pd_args + " --topk 7"), by_budget = run_cli(pd_args + " --budget 7");
  REQUIRE(by_topk.exit_code == 0);
  CHECK(by_topk.err.find("warning: --topk is deprecated, use --budget") != std::string::npos);
  CHECK(by_budget.err.empty());
  REQUIRE(by_budget.exit_code == 0);
  CHECK(nlohmann::json::parse(by_topk.out)["indices"] ==
        nlohmann::json::parse(by_budget.out)["indices"]);
  CHECK(run_cli(pd_args + " --budget 7 --pool none").exit_code == 0);
  // float16 input and bf16 compute run too.
  std::vector<uint16_t> qh(std::size_t(H * D), 0x3c00);
  REQUIRE(write_npy(tmp("qh.npy"), DType::kF16, {1, H, D}, qh.data()).is_ok());
  const auto r = run_cli("select --method promptdistill --q " + tmp("qh.npy") + " --k " +
                         tmp("k.npy") + " --budget 5 --dtype bf16 --json");
  CHECK(r.exit_code == 0);
  CHECK(nlohmann::json::parse(r.out)["indices"].size() == 6u);
}

TEST_CASE("cli/select: bad files and options fail with a one-line error") {
  const std::vector<float> q(64, 1.0f), k(3 * 2 * 32, 1.0f);
  REQUIRE(write_npy(tmp("q1.npy"), DType::kF32, {1, 2, 32}, q.data()).is_ok());
  REQUIRE(write_npy(tmp("k1.npy"), DType::kF32, {3, 2, 32}, k.data()).is_ok());
  REQUIRE(write_npy(tmp("flat.npy"), DType::kF32, {64}, q.data()).is_ok());
  {
    std::ofstream f(tmp("junk.npy"));
    f << "not a numpy file";
  }
  const std::string base = "select --q " + tmp("q1.npy") + " --k " + tmp("k1.npy");
  struct Bad {
    std::string args, expect;
  };
  const Bad cases[] = {
      {"select --q " + tmp("missing.npy") + " --k " + tmp("k1.npy") + " --budget 2", "cannot open"},
      {"select --q " + tmp("junk.npy") + " --k " + tmp("k1.npy") + " --budget 2", "magic"},
      {"select --q " + tmp("flat.npy") + " --k " + tmp("k1.npy") + " --budget 2", "3 dimensions"},
      {base + " --budget -1", "budget must be >= 0"},
      {base + " --budget 2 --method nope",
       "--method: method must be one of promptdistill, gemfilter, snapkv, h2o"},
      {base + " --budget 2 --pool mean", "--pool: pool must be one of none, avg, max"},
      {base + " --budget 2 --per group",
       "--per: per (head grouping) must be one of kv-group, head"},
      {base + " --topk 2 --budget 2", "not also --topk (its former name)"},
      {base + " --budget 2 --pool-kernel 4", "odd"},
      {base + " --budget two", "integer"},
      {base + " --budget 2 --dtype f64", "--dtype"},
      {base + " --budget 2 --bogus 1", "unknown option"},
      {base, "needs"},
      {"select --q " + tmp("k1.npy") + " --k " + tmp("k1.npy") + " --budget 2", "last token"},
  };
  for (const Bad& c : cases) {
    const auto r = run_cli(c.args);
    CAPTURE(c.args);
    CAPTURE(r.err);
    CHECK(r.exit_code != 0);
    CHECK(r.err.find(c.expect) != std::string::npos);
    CHECK(r.err.rfind("error: ", 0) == 0);
    CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
  }
}

TEST_CASE("cli: --weights-dtype on an HF folder; --backend cuda without a GPU is one error line") {
  {
    std::ofstream f(tmp("ids.txt"));
    f << "5 17 33 2 9 100 7 64";
  }
  const std::string base = "generate --model " + std::string(PD_GOLDEN_DIR) +
                           "/tiny_llama31 --prompt-ids " + tmp("ids.txt") +
                           " --max-new-tokens 4 --json";
  const auto f32 = run_cli(base), b16 = run_cli(base + " --weights-dtype bf16");
  CAPTURE(f32.err);
  CHECK(f32.exit_code == 0);
  CHECK(b16.exit_code == 0);
  CHECK(f32.out.find("\"generated_ids\"") != std::string::npos);
  CHECK(b16.out.find("\"generated_ids\"") != std::string::npos);
  const auto bad = run_cli(base + " --weights-dtype f8");
  CHECK(bad.exit_code == 2);
  CHECK(bad.err.find("--weights-dtype") != std::string::npos);
  const auto gpu = run_cli(base + " --backend cuda");
  if (gpu.exit_code != 0) {  // no GPU here (or no CUDA build): one clear line
    CHECK(gpu.err.rfind("error: ", 0) == 0);
    CHECK(gpu.err.find("cuda") != std::string::npos);
  } else {
    CHECK(gpu.out.find("\"peak_memory_kind\":\"device\"") != std::string::npos);
  }
}

TEST_CASE(
    "cli: an HF folder's tokenizer.json is used, and a tokenizer larger than the model is "
    "refused") {
  const std::string dir = tmp("hf_with_tokenizer");
  std::filesystem::create_directories(dir);
  for (const char* f : {"config.json", "model.safetensors"})
    std::filesystem::copy_file(std::string(PD_GOLDEN_DIR) + "/tiny_llama31/" + f, dir + "/" + f,
                               std::filesystem::copy_options::overwrite_existing);
  std::filesystem::copy_file(std::string(PD_GOLDEN_DIR) + "/tok_llama3/tokenizer.json",
                             dir + "/tokenizer.json",
                             std::filesystem::copy_options::overwrite_existing);
  const auto r = run_cli("generate --model " + dir + " --prompt hello --max-new-tokens 2");
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("more than the model's vocabulary") != std::string::npos);
  std::filesystem::remove(dir + "/tokenizer.json");
  const auto none = run_cli("generate --model " + dir + " --prompt hello --max-new-tokens 2");
  CHECK(none.exit_code == 2);
  CHECK(none.err.find("--prompt-ids") != std::string::npos);
}

TEST_CASE("cli: every command's --help prints its own usage and exits 0") {
  for (const char* command : {"select", "generate", "compare", "eval", "demo", "defaults"}) {
    CAPTURE(command);
    for (const char* help : {" --help", " -h", " --method nope --help"}) {
      const auto r = run_cli(std::string(command) + help);
      CHECK(r.exit_code == 0);
      CHECK(r.err.empty());
      CHECK(r.out.find(std::string("promptdistill ") + command) != std::string::npos);
      CHECK(
          r.out.find("promptdistill demo") ==
          (std::string(command) == "demo" ? r.out.find("promptdistill demo") : std::string::npos));
    }
  }
  const auto all = run_cli("--help");
  CHECK(all.exit_code == 0);
  for (const char* command : {"select", "generate", "compare", "eval", "demo", "defaults"})
    CHECK(all.out.find(std::string("promptdistill ") + command) != std::string::npos);
}

TEST_CASE(
    "cli/defaults: one set of published defaults, printed, in the help and in docs/algorithms.md") {
  const auto table = run_cli("defaults");
  REQUIRE(table.exit_code == 0);
  // The documented table is the command's output, line for line.
  const std::string doc = slurp(std::string(PD_GOLDEN_DIR) + "/../../docs/algorithms.md");
  const std::string begin = "<!-- published-defaults:begin -->\n",
                    end = "<!-- published-defaults:end -->";
  const std::size_t at = doc.find(begin), stop = doc.find(end);
  REQUIRE(at != std::string::npos);
  REQUIRE(stop != std::string::npos);
  CHECK(doc.substr(at + begin.size(), stop - at - begin.size()) == table.out);
  // Each JSON line is PipelineConfig::published_default of its method.
  const auto json = run_cli("defaults --json");
  REQUIRE(json.exit_code == 0);
  std::istringstream lines(json.out);
  std::string line;
  int methods = 0;
  while (std::getline(lines, line)) {
    const nlohmann::json j = nlohmann::json::parse(line);
    PipelineMethod m;
    REQUIRE(parse(j.at("method").get<std::string>(), &m).is_ok());
    const PipelineConfig c = PipelineConfig::published_default(m);
    CHECK(c.method == m);
    if (j.contains("selection_layers")) {
      CHECK(j["selection_layers"].get<std::vector<int64_t>>() == c.selection_layers);
      CHECK(j["n_topks"].get<std::vector<int64_t>>() == c.n_topks);
    } else {
      CHECK(j.at("budget").get<int64_t>() == c.budget);
      CHECK(j.at("window").get<int64_t>() == c.window);
      CHECK(j.at("per").get<std::string>() == to_string(c.grouping));
    }
    if (m == PipelineMethod::kFastKV) {
      CHECK(j.at("tsp_layer").get<int64_t>() == c.tsp_layer);
      CHECK(j.at("tsp_length").get<int64_t>() == c.tsp_length);
      CHECK(j.at("pool").get<std::string>() == "max");
    }
    ++methods;
  }
  CHECK(methods == 5);
  // generate's help writes the same numbers as its defaults.
  const PipelineConfig d;
  const auto help = run_cli("generate --help");
  CHECK(help.out.find("[--selection-layers " + std::to_string(d.selection_layers[0]) + " ...]") !=
        std::string::npos);
  CHECK(help.out.find("[--cache-truncation-end " + std::to_string(d.cache_truncation_end) + "]") !=
        std::string::npos);
  CHECK(help.out.find("{") == std::string::npos);  // every placeholder replaced
  CHECK(run_cli("defaults --nope").exit_code == 2);
}

namespace {

//! The tiny Llama checkpoint and a 60-token prompt of it, for generate runs in the tests below.
struct TinyRun {
  ModelWeights weights;
  std::vector<int32_t> prompt;
  std::string base;  //!< "generate --model ... --prompt-ids ... --json"
  TinyRun() {
    REQUIRE(load_hf_model(std::string(PD_GOLDEN_DIR) + "/tiny_llama31", &weights).is_ok());
    prompt = pdtest::random_prompt(60, pdtest::mix(pdtest::seed(), 9));
    std::ofstream f(tmp("tiny_ids.txt"));
    for (int32_t id : prompt) f << id << " ";
    base = "generate --model " + std::string(PD_GOLDEN_DIR) + "/tiny_llama31 --prompt-ids " +
           tmp("tiny_ids.txt") + " --json";
  }
  PrefillResult reference(const PipelineConfig& c) const {
    ref::EigenSession s(&weights);
    PrefillResult r;
    REQUIRE(s.prefill(prompt, c, &r).is_ok());
    return r;
  }
};

}  // namespace

TEST_CASE(
    "cli: --pool and --pool-kernel are honoured where a method pools and refused where none does") {
  const TinyRun tiny;
  for (const char* pool : {"none", "avg", "max"}) {
    CAPTURE(pool);
    const auto r = run_cli(
        tiny.base + " --method promptdistill --selection-layers 0 --n-topks 9 --max-new-tokens 1 " +
        "--dump-selection --pool " + pool + " --pool-kernel 3");
    CAPTURE(r.err);
    REQUIRE(r.exit_code == 0);
    PipelineConfig c;
    c.method = PipelineMethod::kPromptDistill;
    c.selection_layers = {0};
    c.n_topks = {9};
    c.cache_truncation_end = 1;
    REQUIRE(parse(pool, &c.pool).is_ok());
    c.pool_kernel = 3;
    const auto dumped =
        nlohmann::json::parse(r.out)["selected_indices"].get<std::vector<std::vector<int32_t>>>();
    CHECK(dumped == std::vector<std::vector<int32_t>>{tiny.reference(c).selected[0][0]});
  }
  for (const std::string& bad :
       {std::string(" --method h2o --pool max"), std::string(" --method full --pool-kernel 3"),
        std::string(" --method promptdistill --selection-layers 0 --budget 8"),
        std::string(" --method snapkv --n-topks 4"),
        std::string(" --method gemfilter --cache-truncation-end 0")}) {
    const auto r = run_cli(tiny.base + bad);
    CAPTURE(bad);
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("does not apply to") != std::string::npos);
  }
}

TEST_CASE(
    "cli: --dump-selection gives every SnapKV/H2O row; --ignore-eos decodes exactly "
    "--max-new-tokens") {
  const TinyRun tiny;
  for (const char* method : {"snapkv", "h2o"})
    for (const char* per : {"kv-group", "head"}) {
      CAPTURE(method);
      CAPTURE(per);
      const auto r = run_cli(tiny.base + " --method " + method + " --per " + per +
                             " --budget 24 --window 4 --max-new-tokens 1 --dump-selection");
      CAPTURE(r.err);
      REQUIRE(r.exit_code == 0);
      PipelineConfig c;
      REQUIRE(parse(method, &c.method).is_ok());
      REQUIRE(parse(per, &c.grouping).is_ok());
      c.budget = 24;
      c.window = 4;
      const auto dumped = nlohmann::json::parse(r.out)["selected_indices"]
                              .get<std::vector<std::vector<std::vector<int32_t>>>>();
      const PrefillResult want = tiny.reference(c);
      REQUIRE(dumped.size() == 2);  // one entry per layer
      CHECK(dumped[0].size() ==
            (std::string(per) == "head" ? 4u : 2u));  // a row per query head or KV group
      CHECK(dumped == want.selected);
      CHECK(nlohmann::json::parse(r.out)["per"] == per);  // every result says which variant ran
    }
  // A budget at least the prompt's length keeps every token of every layer: the dump says so,
  // with a row per query head (the published default, --per head).
  const auto uncut = run_cli(
      tiny.base + " --method snapkv --budget 100 --window 4 --max-new-tokens 1 --dump-selection");
  REQUIRE(uncut.exit_code == 0);
  std::vector<int32_t> every(tiny.prompt.size());
  for (std::size_t i = 0; i < every.size(); ++i) every[i] = int32_t(i);
  const auto uncut_json = nlohmann::json::parse(uncut.out);
  CHECK(uncut_json["per"] == "head");
  CHECK(uncut_json["selected_indices"] ==
        nlohmann::json(std::vector<std::vector<std::vector<int32_t>>>(
            2, std::vector<std::vector<int32_t>>(4, every))));
  CHECK(uncut_json["retained"] == std::vector<int64_t>(2, int64_t(every.size())));
  // --capacity is --budget's former name: the same run, with a deprecation warning.
  const auto by_budget = run_cli(
      tiny.base + " --method h2o --budget 24 --window 4 --max-new-tokens 2 --dump-selection");
  const auto by_capacity = run_cli(
      tiny.base + " --method h2o --capacity 24 --window 4 --max-new-tokens 2 --dump-selection");
  REQUIRE(by_capacity.exit_code == 0);
  CHECK(by_capacity.err.find("warning: --capacity is deprecated, use --budget") !=
        std::string::npos);
  CHECK(nlohmann::json::parse(by_capacity.out)["selected_indices"] ==
        nlohmann::json::parse(by_budget.out)["selected_indices"]);
  CHECK(run_cli(tiny.base + " --method h2o --capacity 24 --budget 24").exit_code == 2);
  const auto r = run_cli(tiny.base + " --max-new-tokens 7 --ignore-eos");
  REQUIRE(r.exit_code == 0);
  const auto j = nlohmann::json::parse(r.out);
  CHECK(j["generated_ids"].size() == 7u);
  CHECK(j["ignore_eos"] == true);
  CHECK(j["stop_tokens"].empty());
  CHECK(j["per"].is_null());  // full KV has no head grouping
  const auto stopping = nlohmann::json::parse(run_cli(tiny.base + " --max-new-tokens 7").out);
  CHECK(stopping["stop_tokens"] == std::vector<int32_t>{2});  // the checkpoint's eos_token_id
  CHECK(stopping["stop_token_in_output"] == false);
  for (std::size_t i = 1; i < stopping["generated_ids"].size(); ++i)
    CHECK(stopping["generated_ids"][i] != 2);  // [0] is kept whatever it is
}

TEST_CASE("cli: the CPU prefill modes and --max-positions, recorded in the JSON; their errors") {
  const TinyRun tiny;
  const auto exact = run_cli(tiny.base + " --max-new-tokens 3");
  CAPTURE(exact.err);
  REQUIRE(exact.exit_code == 0);
  const auto e = nlohmann::json::parse(exact.out);
  CHECK(e["prefill_weights"].get<std::string>().rfind("f32, ", 0) == 0);
  CHECK(!e["cpu_kernels"].get<std::string>().empty());
  CHECK(e["selection_ms"] == 0.0);  // full KV selects nothing
  const auto bf16 = run_cli(tiny.base + " --max-new-tokens 3 --prefill-weights bf16");
  CAPTURE(bf16.err);
  REQUIRE(bf16.exit_code == 0);
  const auto b = nlohmann::json::parse(bf16.out);
  CHECK(b["prefill_weights"].get<std::string>().rfind("bf16, ", 0) == 0);
  CHECK(b["generated_ids"].size() == 3u);
  // The 60-token prompt does not fit a context lowered to 30: the flag reaches the model.
  const auto shorter = run_cli(tiny.base + " --max-new-tokens 2 --max-positions 30");
  CHECK(shorter.exit_code != 0);
  CHECK(shorter.err.find("30") != std::string::npos);
  struct Bad {
    std::string args, mentions;
  };
  for (const Bad& bad : {Bad{" --prefill-weights f8", "--prefill-weights"},
                         Bad{" --max-positions 0", "--max-positions"},
                         Bad{" --prefill-weights bf16 --backend cuda", "CPU backend"}}) {
    const auto r = run_cli(tiny.base + " --max-new-tokens 2" + bad.args);
    CAPTURE(bad.args);
    CHECK(r.exit_code == 2);
    CHECK(r.err.find(bad.mentions) != std::string::npos);
  }
}

TEST_CASE(
    "cli: --threads on every command, recorded in the JSON; the CPU decode modes and their "
    "errors") {
  const TinyRun tiny;
  const auto one = run_cli(tiny.base + " --max-new-tokens 3 --threads 1");
  CAPTURE(one.err);
  REQUIRE(one.exit_code == 0);
  const auto j = nlohmann::json::parse(one.out);
  CHECK(j["threads"] == 1);
  CHECK(j["decode_weights"] == "f32");
  CHECK(j["kv_cache"] == "f32");
  const auto fast =
      run_cli(tiny.base + " --max-new-tokens 3 --threads 2 --decode-weights f16 --kv-cache f16");
  CAPTURE(fast.err);
  REQUIRE(fast.exit_code == 0);
  const auto f = nlohmann::json::parse(fast.out);
  CHECK(f["threads"] == 2);
  CHECK(f["decode_weights"] == "f16 (layers), f16 (lm head)");
  CHECK(f["kv_cache"] == "f16");
  CHECK(f["generated_ids"].size() == 3u);
  struct Bad {
    std::string args, mentions;
  };
  for (const Bad& bad :
       {Bad{" --threads -1", "--threads"}, Bad{" --decode-weights q2", "--decode-weights"},
        Bad{" --kv-cache f8", "--kv-cache"}, Bad{" --decode-weights gguf", "GGUF"},
        Bad{" --kv-cache f16 --backend cuda", "CPU backend"}}) {
    const auto r = run_cli(tiny.base + " --max-new-tokens 2" + bad.args);
    CAPTURE(bad.args);
    CHECK(r.exit_code == 2);
    CHECK(r.err.find(bad.mentions) != std::string::npos);
  }
  for (const char* command : {"compare", "demo --length 256", "eval passkey --lengths 64"}) {
    const auto r = run_cli(std::string(command) + " --threads 0 --nonsense 1");
    CAPTURE(command);
    CHECK(r.err.find("--threads") ==
          std::string::npos);  // --threads is known: the unknown option is the other one
    CHECK(r.err.find("--nonsense") != std::string::npos);
  }
}

TEST_CASE(
    "cli: a JSON line whose generated text stops inside a UTF-8 character is written, not thrown") {
  // A 7,900-token random prompt made generate --json abort with nlohmann's type_error 316: the
  // text of its two tokens ended with the lead byte 0xD7 of a two-byte character.
  nlohmann::json j;
  j["text"] = std::string("ok \xD7");
  j["generated"] = std::string("\xE2\x82");
  const std::string line = pdcli::json_line(j);
  CHECK(line.find('\n') == std::string::npos);
  const auto back = nlohmann::json::parse(line);
  CHECK(back["text"] == "ok \xEF\xBF\xBD");  // U+FFFD
  CHECK(back["generated"] == "\xEF\xBF\xBD");
  CHECK_THROWS(j.dump());  // what the plain dump does with the same object
}
