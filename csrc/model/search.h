// Generation: greedy search, sampling and beam search over DecoderState, the
// whole loop in C++ (one call from Python runs every step).
#pragma once

#include <cstdint>
#include <memory>
#include <random>
#include <vector>

#include "model/decoder_state.h"
#include "model/transformer.h"

namespace pt::model {

// Options of one generate call. Their defaults live in one place, the signature of
// Python's Transformer.generate: the bindings fill every field.
struct GenerationOptions {
  int64_t max_length{};       // tokens to generate at most (EOS included, start tokens not)
  int64_t min_length{};       // EOS is suppressed until this many tokens were generated
  int64_t beam_size{};
  float length_penalty{};     // score = log_prob / length^length_penalty
  int64_t num_hypotheses{};   // <= beam_size
  int64_t sampling_topk{};    // 1: greedy; 0: the whole vocabulary
  double sampling_topp{};     // nucleus: smallest set of tokens with probability >= topp
  double sampling_temperature{};  // double: 1e-40 must still mean "almost greedy"
  uint64_t seed{};
  bool return_scores{};
  std::vector<int32_t> suppress_tokens;  // never generated (their log-probability is -inf)
  std::vector<int32_t> begin_suppress_tokens;  // not generated as the first token after the start tokens (Whisper)
  // Scores under the processed distribution (CTranslate2's rule): log-probabilities
  // are those of the softmax over the logits left after suppression and the
  // timestamp rules, not of the raw logits (Hugging Face's rule, the default).
  bool renormalize = false;
  // >= 0: record P(probe_token) (softmax of the raw logits) at the first step whose
  // decoder input is probe_after (Whisper's no-speech probability after
  // <|startoftranscript|>), in Hypothesis::probe.
  int32_t probe_token = -1;
  // Beam search with CTranslate2's semantics instead of Hugging Face's: the top K of
  // the 2K candidates that end (EOS, or max_length) become hypotheses, each replaced
  // by the next unfinished candidate; a source stops with round(K * patience)
  // hypotheses (or, at length_penalty 0, once its best beam ended and it has
  // num_hypotheses); hypotheses are ranked by log_prob / (tokens without EOS)^length_penalty.
  bool ct2_beam = false;
  float patience = 1.0f;
  int32_t probe_after = -1;
  int32_t decoder_start = -1;  // >= 0: the first decoder input instead of the config's bos_id
  // Whisper's timestamp rules (timestamp_begin >= 0: on): the generated tokens (after
  // the start tokens) hold text and timestamp ids >= timestamp_begin; see
  // apply_timestamp_rules in search.cpp. no_timestamps: never generated;
  // max_initial_timestamp: the largest timestamp id allowed first.
  int32_t timestamp_begin = -1;
  int32_t no_timestamps = -1;
  int32_t max_initial_timestamp = -1;
  bool forced_eos{};          // the max_length-th token must be EOS, with log-probability 0 (HF's forced_eos_token_id)
  int32_t forced_bos = -1;    // >= 0: the first generated token is this id, log-probability 0 (forced_bos_token_id)
  bool early_stopping{};      // beam search: a source stops once it has beam_size finished hypotheses
};

struct Hypothesis {
  std::vector<int32_t> tokens;  // start tokens, then generated tokens; no BOS, no EOS
  float score = 0.0f;           // log_prob / generated_length^length_penalty
  float log_prob = 0.0f;        // sum of the generated tokens' log-probabilities (EOS included)
  float probe = -1.0f;          // options.probe_token's probability (-1: not recorded)
};

// One entry per source: up to options.num_hypotheses hypotheses, best first. Beam
// search returns only finished hypotheses with real scores, so fewer when fewer exist
// (e.g. most tokens suppressed); greedy search and sampling return exactly one.
// src_ids [B,S]; src_lengths [B] or null; start_tokens: empty or B forced prefixes.
std::vector<std::vector<Hypothesis>> generate(const Transformer& model, const int32_t* src_ids, int64_t B, int64_t S,
                                              const int32_t* src_lengths,
                                              const std::vector<std::vector<int32_t>>& start_tokens,
                                              const GenerationOptions& options);

// The same from a memory encode()/encode_features() already computed: memory
// [B,S,d_model]; src_lengths [B] (<= S) or null.
std::vector<std::vector<Hypothesis>> generate_from_memory(const Transformer& model, const float* memory, int64_t B,
                                                          int64_t S, const int32_t* src_lengths,
                                                          const std::vector<std::vector<int32_t>>& start_tokens,
                                                          const GenerationOptions& options);

// Greedy or sampled decoding of one source, one token per next() call (streaming).
class TokenStream {
 public:
  TokenStream(const Transformer& model, const int32_t* src_ids, int64_t S, const std::vector<int32_t>& start_tokens,
              const GenerationOptions& options);
  ~TokenStream();
  // The next generated token, or -1 once EOS or max_length is reached (EOS itself
  // is not returned). Start tokens are not returned either.
  int32_t next();

 private:
  int32_t next_token();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace pt::model
