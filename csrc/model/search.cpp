#include "model/search.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <string>

#include "runtime/aligned_buffer.h"

namespace pt::model {

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
// The "impossible" score of Hugging Face's beam search: keeping the same constant
// (in float32) makes the same choices in the same corner cases.
constexpr float kImpossible = -1.0e9f;

std::vector<float> encode_memory(const Transformer& model, const int32_t* src_ids, int64_t B, int64_t S,
                                 const int32_t* src_lengths) {
  std::vector<float> memory(static_cast<size_t>(B * S * model.config().d_model));
  model.encode(src_ids, B, S, src_lengths, memory.data());
  return memory;
}

int64_t max_prefix(const std::vector<std::vector<int32_t>>& start_tokens) {
  int64_t m = 0;
  for (const auto& p : start_tokens) m = std::max<int64_t>(m, static_cast<int64_t>(p.size()));
  return m;
}

// A hypothesis' log-probability is real when finite and not carrying kImpossible.
bool real_log_prob(float lp) { return std::isfinite(lp) && lp > 0.5f * kImpossible; }

float length_normalizer(int64_t length, float penalty) {
  return static_cast<float>(std::pow(static_cast<double>(length), static_cast<double>(penalty)));
}

// log(sum(exp(x))) over n values (-inf when all are -inf).
float log_sum_exp(const float* x, int64_t n) {
  float m = kNegInf;
  for (int64_t i = 0; i < n; ++i) m = std::max(m, x[i]);
  if (m == kNegInf) return kNegInf;
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += std::exp(static_cast<double>(x[i]) - m);
  return static_cast<float>(m + std::log(sum));
}

// Whisper's timestamp rules (OpenAI's ApplyTimestampRules, as CTranslate2 applies
// them) on one row of scores (logits, or log-probabilities: only differences
// matter), given the g tokens generated so far (after the start tokens):
//  - <|notimestamps|> is never generated;
//  - first token: a timestamp, at most max_initial_timestamp;
//  - after a timestamp that follows a timestamp (or the first token): not a timestamp;
//    after a timestamp that follows text: a timestamp (not earlier than it) or EOT;
//  - after text: no timestamp earlier than or equal to the last one;
//  - and, where text may follow, text is forbidden when the timestamps' total
//    probability beats every text token (EOT counts as text).
// Tokens already at -inf (suppressed) stay out of the probability test.
void apply_timestamp_rules(const GenerationOptions& o, int32_t eot, const int32_t* gen, int64_t g, float* row,
                           int64_t V) {
  const int64_t tb = o.timestamp_begin;
  auto block = [&](int64_t from, int64_t to) {
    for (int64_t v = std::max<int64_t>(from, 0); v < std::min(to, V); ++v) row[v] = kNegInf;
  };
  if (o.no_timestamps >= 0) row[o.no_timestamps] = kNegInf;
  bool check = false;
  if (g == 0) {
    block(0, tb);
    if (o.max_initial_timestamp >= 0) block(int64_t{o.max_initial_timestamp} + 1, V);
  } else {
    const int64_t last = gen[g - 1];
    if (last >= tb) {
      const int64_t penultimate = g >= 2 ? gen[g - 2] : last;
      if (penultimate >= tb) {
        block(tb, V);
      } else {
        block(0, eot);
        block(tb, last);
        check = true;
      }
    } else {
      check = true;
      for (int64_t t = g - 1; t >= 0; --t)
        if (gen[t] >= tb) {
          block(tb, int64_t{gen[t]} + 1);
          break;
        }
    }
  }
  if (!check) return;
  float text_max = kNegInf, ts_max = kNegInf;
  for (int64_t v = 0; v < tb; ++v) text_max = std::max(text_max, row[v]);
  for (int64_t v = tb; v < V; ++v) ts_max = std::max(ts_max, row[v]);
  if (ts_max == kNegInf) return;
  double sum = 0.0;
  for (int64_t v = tb; v < V; ++v) sum += std::exp(static_cast<double>(row[v]) - ts_max);
  const double ts_logsumexp = ts_max + std::log(sum);
  if (ts_logsumexp > static_cast<double>(text_max)) block(0, tb);
}

// ---------------------------------------------------------------------------
// Greedy search and sampling: one row per source.
// ---------------------------------------------------------------------------

// Picks the next token of one row from its logits.
class TokenChooser {
 public:
  TokenChooser(const GenerationOptions& o, int64_t vocab) : o_(o), vocab_(vocab), allowed_(static_cast<size_t>(vocab), 1) {
    for (int32_t t : o.suppress_tokens) allowed_[static_cast<size_t>(t)] = 0;
    all_allowed_ = o.suppress_tokens.empty();
    if (!greedy()) {
      scratch_.resize(static_cast<size_t>(vocab));
      order_.resize(static_cast<size_t>(vocab));
    }
  }
  bool greedy() const { return o_.sampling_topk == 1; }

  // logits [vocab]; blocked: -1 or one more token that must not be chosen (EOS
  // before min_length); only: -1 or the one token allowed (forced EOS).
  int32_t choose(const float* logits, int32_t blocked, int32_t only, std::mt19937_64& rng) {
    const int32_t t = choose_any(logits, blocked, only, rng);
    // check_options rules out a step where nothing may be generated; never emit or
    // embed an invalid id even if that changes.
    if (t < 0 || t >= vocab_) throw std::logic_error("generation: no token can be generated at this step");
    return t;
  }

 private:
  bool eligible(int64_t v, int32_t blocked) const { return v != blocked && allowed_[static_cast<size_t>(v)]; }

  // The first eligible token with the largest logit: the first eligible one, replaced
  // by each later one that is strictly greater (a NaN there is never chosen; a NaN
  // first stays). -1 when nothing is eligible. With every token allowed, the maximum
  // is taken by a branch-free loop over the row and its first position found after:
  // the same token, at a fraction of the per-token cost.
  int32_t greedy_choice(const float* logits, int32_t blocked) const {
    int64_t first = 0;
    while (first < vocab_ && !eligible(first, blocked)) ++first;
    if (first == vocab_) return -1;
    float bv = logits[first];
    if (!(bv == bv)) return static_cast<int32_t>(first);
    if (all_allowed_) {
      // max over (first, vocab) without `blocked`: two plain ranges.
      // 8 running maxima, 8 independent dependency chains (the order of a max over
      // the row only decides between +0 and -0, which the search below treats as equal).
      auto range_max = [&](int64_t b, int64_t e, float m) {
        float lane[8] = {m, m, m, m, m, m, m, m};
        int64_t v = b;
        for (; v + 8 <= e; v += 8)
          for (int j = 0; j < 8; ++j) lane[j] = logits[v + j] > lane[j] ? logits[v + j] : lane[j];
        for (; v < e; ++v) m = logits[v] > m ? logits[v] : m;
        for (int j = 0; j < 8; ++j) m = lane[j] > m ? lane[j] : m;
        return m;
      };
      if (blocked > first && blocked < vocab_) {
        bv = range_max(blocked + 1, vocab_, range_max(first + 1, blocked, bv));
      } else {
        bv = range_max(first + 1, vocab_, bv);
      }
      for (int64_t v = first; v < vocab_; ++v)
        if (logits[v] == bv && v != blocked) return static_cast<int32_t>(v);
      return static_cast<int32_t>(first);  // not reached: bv is one of the values
    }
    int64_t best = first;
    for (int64_t v = first + 1; v < vocab_; ++v)
      if (logits[v] > bv && eligible(v, blocked)) {
        best = v;
        bv = logits[v];
      }
    return static_cast<int32_t>(best);
  }

  int32_t choose_any(const float* logits, int32_t blocked, int32_t only, std::mt19937_64& rng) {
    if (only >= 0) return only;
    if (greedy()) return greedy_choice(logits, blocked);
    // Sampling: temperature, then top-k, then top-p, from the remaining mass.
    const double temperature = o_.sampling_temperature;
    int64_t n = 0;
    for (int64_t v = 0; v < vocab_; ++v)
      if (v != blocked && allowed_[static_cast<size_t>(v)]) order_[static_cast<size_t>(n++)] = static_cast<int32_t>(v);
    auto by_logit = [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
    int64_t keep = n;
    if (o_.sampling_topk > 0 && o_.sampling_topk < n) {
      keep = o_.sampling_topk;
      std::partial_sort(order_.begin(), order_.begin() + keep, order_.begin() + n, by_logit);
    } else if (o_.sampling_topp < 1.0f) {
      std::sort(order_.begin(), order_.begin() + n, by_logit);
    }
    if (keep == 0) return -1;
    float mx = kNegInf;
    for (int64_t i = 0; i < keep; ++i) mx = std::max(mx, logits[order_[static_cast<size_t>(i)]]);
    double total = 0.0;
    for (int64_t i = 0; i < keep; ++i) {
      // Divided in double: at tiny temperatures 1/T would overflow and 0 * inf is NaN.
      const double p = std::exp(static_cast<double>(logits[order_[static_cast<size_t>(i)]] - mx) / temperature);
      scratch_[static_cast<size_t>(i)] = static_cast<float>(p);
      total += p;
    }
    if (o_.sampling_topp < 1.0f) {
      // Sorted by probability: keep the smallest prefix whose mass reaches topp.
      double cum = 0.0;
      int64_t k = 0;
      while (k < keep) {
        cum += scratch_[static_cast<size_t>(k)];
        ++k;
        if (cum >= o_.sampling_topp * total) break;
      }
      keep = k;
      total = cum;
    }
    const double u = static_cast<double>(rng() >> 11) * (1.0 / 9007199254740992.0);  // [0, 1)
    double target = u * total, acc = 0.0;
    for (int64_t i = 0; i < keep; ++i) {
      acc += scratch_[static_cast<size_t>(i)];
      if (target < acc) return order_[static_cast<size_t>(i)];
    }
    return order_[static_cast<size_t>(keep - 1)];
  }

  const GenerationOptions& o_;
  int64_t vocab_;
  std::vector<float> scratch_;
  std::vector<int32_t> order_;
  std::vector<uint8_t> allowed_;
  bool all_allowed_ = true;  // no suppress_tokens: greedy_choice takes the fast path
};

struct SampledSource {
  std::vector<int32_t> prefix, out;
  int64_t generated = 0;
  float log_prob = 0.0f;
  float probe = -1.0f;
  bool done = false;
  std::mt19937_64 rng;
};

// P(token) under the softmax of a row of raw logits.
float token_probability(const float* row, int64_t V, int32_t token) {
  return static_cast<float>(std::exp(static_cast<double>(row[token]) - log_sum_exp(row, V)));
}

// Runs greedy/sampled decoding for all sources; per-step callback optional.
class SamplingRun {
 public:
  SamplingRun(const Transformer& model, const float* memory, int64_t B, int64_t S, const int32_t* src_lengths,
              const std::vector<std::vector<int32_t>>& start_tokens, const GenerationOptions& o)
      : model_(model),
        o_(o),
        state_(model, memory, B, S, src_lengths, 1, max_prefix(start_tokens) + o.max_length),
        chooser_(o, model.config().tgt_vocab_size),
        sources_(static_cast<size_t>(B)),
        bos_(static_cast<int32_t>(o.decoder_start >= 0 ? o.decoder_start : model.config().bos_id)),
        eos_(static_cast<int32_t>(model.config().eos_id)) {
    const int64_t V = model.config().tgt_vocab_size;
    for (int64_t b = 0; b < B; ++b) {
      SampledSource& s = sources_[static_cast<size_t>(b)];
      if (!start_tokens.empty()) s.prefix = start_tokens[static_cast<size_t>(b)];
      s.out.reserve(s.prefix.size() + static_cast<size_t>(o.max_length));
      // One stream per source: a source's samples do not depend on the others.
      s.rng.seed(o.seed ^ (0x9E3779B97F4A7C15ull * static_cast<uint64_t>(b + 1)));
      active_.push_back(b);
    }
    tokens_.assign(static_cast<size_t>(B), bos_);
    keep_.reserve(static_cast<size_t>(B));
    logp_.resize(static_cast<size_t>(B * V));
  }

  bool finished() const { return active_.empty(); }

  // One decoder step for every active source. Returns, per active source before the
  // step, the token it produced (-1: finished without a new token).
  void step(std::vector<std::pair<int64_t, int32_t>>* produced) {
    const int64_t V = model_.config().tgt_vocab_size, R = state_.rows();
    const float* logits = state_.advance(tokens_.data());
    const bool need_logp = o_.return_scores;
    if (need_logp) model_.kernels().log_softmax(logits, logp_.data(), R, V);
    keep_.clear();
    for (int64_t r = 0; r < R; ++r) {
      SampledSource& s = sources_[static_cast<size_t>(active_[static_cast<size_t>(r)])];
      if (o_.probe_token >= 0 && s.probe < 0.0f && tokens_[static_cast<size_t>(r)] == o_.probe_after)
        s.probe = token_probability(logits + r * V, V, o_.probe_token);
      int32_t next;
      if (s.out.size() < s.prefix.size()) {
        next = s.prefix[s.out.size()];
        s.out.push_back(next);
      } else {
        const int32_t blocked = s.generated < o_.min_length ? eos_ : -1;
        // Hugging Face's order: a forced EOS at max_length overrides a forced first token.
        const bool force_eos = o_.forced_eos && s.generated + 1 == o_.max_length;
        const int32_t forced = force_eos ? eos_ : (s.generated == 0 && o_.forced_bos >= 0 ? o_.forced_bos : -1);
        const float* row = logits + r * V;
        if (o_.timestamp_begin >= 0 || o_.renormalize) {
          // the rules' probability test needs every suppression applied first
          first_row_.assign(row, row + V);
          for (int32_t t : o_.suppress_tokens) first_row_[static_cast<size_t>(t)] = kNegInf;
          if (s.generated == 0)
            for (int32_t t : o_.begin_suppress_tokens) first_row_[static_cast<size_t>(t)] = kNegInf;
          if (o_.timestamp_begin >= 0) {
            const int64_t p = static_cast<int64_t>(s.prefix.size());
            apply_timestamp_rules(o_, eos_, s.out.data() + p, static_cast<int64_t>(s.out.size()) - p,
                                  first_row_.data(), V);
          }
          row = first_row_.data();
        } else if (s.generated == 0 && !o_.begin_suppress_tokens.empty()) {
          first_row_.assign(row, row + V);
          for (int32_t t : o_.begin_suppress_tokens) first_row_[static_cast<size_t>(t)] = kNegInf;
          row = first_row_.data();
        }
        next = chooser_.choose(row, blocked, forced, s.rng);
        if (need_logp && forced < 0)
          s.log_prob += o_.renormalize ? row[next] - log_sum_exp(row, V) : logp_[static_cast<size_t>(r * V + next)];
        ++s.generated;
        if (next == eos_)
          s.done = true;
        else
          s.out.push_back(next);
        if (s.generated >= o_.max_length) s.done = true;
      }
      if (produced) produced->push_back({active_[static_cast<size_t>(r)], next});
      if (!s.done) {
        tokens_[keep_.size()] = next;
        keep_.push_back(r);
      }
    }
    if (static_cast<int64_t>(keep_.size()) != R) {
      state_.keep_sources(keep_);
      for (size_t n = 0; n < keep_.size(); ++n) active_[n] = active_[static_cast<size_t>(keep_[n])];
      active_.resize(keep_.size());
    }
  }

  std::vector<std::vector<Hypothesis>> results() const {
    std::vector<std::vector<Hypothesis>> all;
    for (const SampledSource& s : sources_) {
      Hypothesis h;
      h.tokens = s.out;
      h.log_prob = s.log_prob;
      h.probe = s.probe;
      h.score = s.generated > 0 ? s.log_prob / length_normalizer(s.generated, o_.length_penalty) : 0.0f;
      all.push_back({h});
    }
    return all;
  }

 private:
  const Transformer& model_;
  const GenerationOptions& o_;
  DecoderState state_;
  TokenChooser chooser_;
  std::vector<SampledSource> sources_;
  std::vector<int64_t> active_;  // source of each active row
  std::vector<int64_t> keep_;    // rows that continue after a step (reserved: no allocation per step)
  std::vector<float> first_row_;  // the logits of a first step with begin_suppress_tokens
  std::vector<int32_t> tokens_;
  std::vector<float> logp_;
  int32_t bos_, eos_;
};

// ---------------------------------------------------------------------------
// Beam search, with the semantics of Hugging Face transformers' beam search
// (early_stopping=False): 2K candidates per step, finished hypotheses only from the
// top K, K finished slots, and its stopping heuristic.
// ---------------------------------------------------------------------------

// Token sequences of fixed capacity, stored in one preallocated block.
class SequenceStore {
 public:
  SequenceStore(int64_t count, int64_t capacity)
      : cap_(capacity), len_(static_cast<size_t>(count), 0), data_(static_cast<size_t>(count * capacity)) {}
  int32_t* data(int64_t i) { return data_.data() + i * cap_; }
  const int32_t* data(int64_t i) const { return data_.data() + i * cap_; }
  int64_t size(int64_t i) const { return len_[static_cast<size_t>(i)]; }
  // Sequence i = src (n tokens) followed by `tail` (>= 0) when given.
  void assign(int64_t i, const int32_t* src, int64_t n, int32_t tail = -1) {
    std::copy(src, src + n, data(i));
    if (tail >= 0) data(i)[n++] = tail;
    len_[static_cast<size_t>(i)] = n;
  }
  void push(int64_t i, int32_t t) { data(i)[len_[static_cast<size_t>(i)]++] = t; }

 private:
  int64_t cap_;
  std::vector<int64_t> len_;
  std::vector<int32_t> data_;
};

struct Slot {  // a finished hypothesis (or an empty slot)
  float score = kImpossible;  // length-normalised
  float log_prob = 0.0f;
  bool finished = false;
};

struct BeamSource {
  std::vector<int32_t> prefix;
  int64_t generated = 0, forced = 0;
  float probe = -1.0f;
  std::vector<Hypothesis> ended;  // ct2_beam: the hypotheses registered so far (raw log_prob)
  bool top_ended = false;         // ct2_beam: the best candidate of some step ended
  bool improvable = true;
  bool done = false;
};

// Beam search over all sources at once: per source b, running beams b*K + i (their
// sequences, scores and decoder rows) and K slots of finished hypotheses, all
// preallocated so that the step loop never allocates. One step():
//   1. logits_processors: min_length, suppress_tokens, forced_bos, forced_eos on the
//      log-probabilities (Hugging Face's order);
//   2. top_candidates: the best 2K continuations over the source's K beams;
//   3. update_slots: the finished ones among the top K enter the slots if better;
//   4. continue_beams: the K best unfinished continuations become the beams;
//   5. source_done: the early-stopping rule;
// then the decoder rows follow their parents and finished sources leave the batch.
class BeamSearch {
 public:
  BeamSearch(const Transformer& model, const float* memory, int64_t B, int64_t S, const int32_t* src_lengths,
             const std::vector<std::vector<int32_t>>& start_tokens, const GenerationOptions& o, int32_t bos,
             int32_t eos)
      : model_(model),
        o_(o),
        eos_(eos),
        B_(B),
        K_(o.beam_size),
        V_(model.config().tgt_vocab_size),
        C_(2 * o.beam_size),
        steps_(max_prefix(start_tokens) + o.max_length),
        state_(model, memory, B, S, src_lengths, o.beam_size, steps_),
        src_(static_cast<size_t>(B)),
        run_(B * K_, steps_),
        next_(B * K_, steps_),
        slots_seq_(B * K_, steps_),
        slots_next_(B * K_, steps_),
        scores_(static_cast<size_t>(B * K_), kImpossible),
        next_scores_(static_cast<size_t>(B * K_)),
        slots_(static_cast<size_t>(B * K_)),
        merged_(static_cast<size_t>(K_ + C_)),
        order_(static_cast<size_t>(K_ + C_)),
        tokens_(static_cast<size_t>(B * K_), bos),
        parent_(static_cast<size_t>(B * K_)),
        logp_(static_cast<size_t>(B * K_ * V_)),
        hit_(static_cast<size_t>(C_)) {
    active_.reserve(static_cast<size_t>(B));
    keep_.reserve(static_cast<size_t>(B));
    cands_.reserve(static_cast<size_t>(C_));
    for (int64_t b = 0; b < B; ++b) {
      if (!start_tokens.empty()) src_[static_cast<size_t>(b)].prefix = start_tokens[static_cast<size_t>(b)];
      scores_[static_cast<size_t>(b * K_)] = 0.0f;
      active_.push_back(b);
    }
  }

  std::vector<std::vector<Hypothesis>> run() {
    while (!active_.empty()) step();
    return results();
  }

 private:
  struct Cand {
    float score;
    int64_t index;  // beam * V + token
  };

  static bool better(const Cand& x, const Cand& y) { return x.score > y.score || (x.score == y.score && x.index < y.index); }

  void step() {
    const int64_t R = state_.rows();
    const float* logits = state_.advance(tokens_.data());
    model_.kernels().log_softmax(logits, logp_.data(), R, V_);
    keep_.clear();
    for (int64_t a = 0; a < static_cast<int64_t>(active_.size()); ++a) {
      const int64_t b = active_[static_cast<size_t>(a)], r0 = a * K_, s0 = b * K_;
      BeamSource& s = src_[static_cast<size_t>(b)];
      if (o_.probe_token >= 0 && s.probe < 0.0f && tokens_[static_cast<size_t>(r0)] == o_.probe_after)
        s.probe = std::exp(logp_[static_cast<size_t>(r0 * V_ + o_.probe_token)]);
      if (s.forced < static_cast<int64_t>(s.prefix.size())) {  // forced start tokens
        force_start_token(s, r0, s0);
        keep_.push_back(a);
        continue;
      }
      float* lp = logp_.data() + r0 * V_;
      logits_processors(s, s0, lp);
      top_candidates(s0, lp);
      if (o_.ct2_beam) {
        s.done = ct2_step(s, r0, s0);
        if (!s.done) keep_.push_back(a);
        continue;
      }
      const int64_t n = static_cast<int64_t>(cands_.size());
      const bool at_max = s.generated + 1 >= o_.max_length;
      for (int64_t j = 0; j < n; ++j)
        hit_[static_cast<size_t>(j)] = at_max || cands_[static_cast<size_t>(j)].index % V_ == eos_;
      update_slots(s, s0, n);
      continue_beams(r0, s0, n);
      ++s.generated;
      s.done = source_done(s, s0, n);
      if (!s.done) keep_.push_back(a);
    }
    // Rows follow their parents; finished sources leave the batch.
    state_.reorder(parent_.data());
    if (keep_.size() != active_.size()) {
      for (size_t n = 0; n < keep_.size(); ++n) {
        const int64_t a = keep_[n];
        for (int64_t i = 0; i < K_; ++i)
          tokens_[n * static_cast<size_t>(K_) + static_cast<size_t>(i)] = tokens_[static_cast<size_t>(a * K_ + i)];
        active_[n] = active_[static_cast<size_t>(a)];
      }
      state_.keep_sources(keep_);
      active_.resize(keep_.size());
    }
  }

  // Every beam of the source takes its next start token.
  void force_start_token(BeamSource& s, int64_t r0, int64_t s0) {
    const int32_t tok = s.prefix[static_cast<size_t>(s.forced++)];
    for (int64_t i = 0; i < K_; ++i) {
      run_.push(s0 + i, tok);
      tokens_[static_cast<size_t>(r0 + i)] = tok;
      parent_[static_cast<size_t>(r0 + i)] = static_cast<int32_t>(r0 + i);
    }
  }

  // lp [K, V]: the source's log-probabilities, processed in Hugging Face's order.
  void logits_processors(const BeamSource& s, int64_t s0, float* lp) {
    const int64_t K = K_, V = V_;
    if (s.generated < o_.min_length)
      for (int64_t i = 0; i < K; ++i) lp[i * V + eos_] = kNegInf;
    for (int32_t t : o_.suppress_tokens)
      for (int64_t i = 0; i < K; ++i) lp[i * V + t] = kNegInf;
    if (s.generated == 0)
      for (int32_t t : o_.begin_suppress_tokens)
        for (int64_t i = 0; i < K; ++i) lp[i * V + t] = kNegInf;
    if (o_.timestamp_begin >= 0) {
      const int64_t p = static_cast<int64_t>(s.prefix.size());
      for (int64_t i = 0; i < K; ++i) {
        const int64_t row = s0 + i;
        apply_timestamp_rules(o_, eos_, run_.data(row) + p, run_.size(row) - p, lp + i * V, V);
      }
    }
    if (o_.renormalize)
      for (int64_t i = 0; i < K; ++i) {
        float* x = lp + i * V;
        const float lse = log_sum_exp(x, V);
        if (lse != kNegInf)
          for (int64_t v = 0; v < V; ++v) x[v] -= lse;
      }
    if (o_.forced_bos >= 0 && s.generated == 0)
      for (int64_t i = 0; i < K; ++i) {
        std::fill(lp + i * V, lp + (i + 1) * V, kNegInf);
        lp[i * V + o_.forced_bos] = 0.0f;
      }
    if (o_.forced_eos && s.generated + 1 == o_.max_length)
      for (int64_t i = 0; i < K; ++i) {
        std::fill(lp + i * V, lp + (i + 1) * V, kNegInf);
        lp[i * V + eos_] = 0.0f;
      }
  }

  // cands_ = the top 2K of score[i] + lp[i][v] over all beams i and tokens v, best
  // first (a heap whose front is the worst kept candidate while scanning). The scan
  // is the hot loop of beam search (K x V per step): sizes are locals (not members,
  // which every store into cands_ could alias), and a candidate is compared by score
  // only: indices grow during the scan, so a tie never beats a kept candidate and
  // `score > worst` is exactly better(candidate, worst kept).
  void top_candidates(int64_t s0, const float* lp) {
    const int64_t K = K_, V = V_;
    const size_t C = static_cast<size_t>(C_);
    std::vector<Cand>& cands = cands_;
    cands.clear();
    float worst = 0.0f;  // cands.front().score once C candidates are kept
    for (int64_t i = 0; i < K; ++i) {
      const float base = scores_[static_cast<size_t>(s0 + i)];
      const float* row = lp + i * V;
      int64_t v = 0;
      for (; v < V && cands.size() < C; ++v) {
        cands.push_back(Cand{base + row[v], i * V + v});
        std::push_heap(cands.begin(), cands.end(), better);
        if (cands.size() == C) worst = cands.front().score;
      }
      for (; v < V; ++v) {
        const float score = base + row[v];
        if (score > worst) {
          std::pop_heap(cands.begin(), cands.end(), better);
          cands.back() = Cand{score, i * V + v};
          std::push_heap(cands.begin(), cands.end(), better);
          worst = cands.front().score;
        }
      }
    }
    std::sort(cands.begin(), cands.end(), better);
  }

  // CTranslate2's step (see GenerationOptions::ct2_beam); true when the source is done.
  bool ct2_step(BeamSource& s, int64_t r0, int64_t s0) {
    const int64_t n = static_cast<int64_t>(cands_.size());
    const bool last = s.generated + 1 >= o_.max_length;
    const int64_t p = static_cast<int64_t>(s.prefix.size());
    int64_t secondary = K_;
    for (int64_t k = 0; k < K_; ++k) {
      int64_t take = std::min(k, n - 1);
      const Cand& c = cands_[static_cast<size_t>(take)];
      const int32_t tok = static_cast<int32_t>(c.index % V_);
      if (k < n && (tok == eos_ || last) && real_log_prob(c.score)) {
        if (k == 0) s.top_ended = true;
        const int64_t beam = c.index / V_;
        Hypothesis h;
        h.tokens.assign(run_.data(s0 + beam), run_.data(s0 + beam) + run_.size(s0 + beam));
        if (tok != eos_) h.tokens.push_back(tok);
        h.log_prob = c.score;
        const int64_t length = static_cast<int64_t>(h.tokens.size()) - p;
        h.score = c.score / length_normalizer(length, o_.length_penalty);
        s.ended.push_back(std::move(h));
        for (int64_t j = secondary; j < n; ++j)
          if (cands_[static_cast<size_t>(j)].index % V_ != eos_) {
            take = j;
            secondary = j + 1;
            break;
          }
      }
      const Cand& t = cands_[static_cast<size_t>(take)];
      const int64_t beam = t.index / V_;
      const int32_t next = static_cast<int32_t>(t.index % V_);
      next_.assign(s0 + k, run_.data(s0 + beam), run_.size(s0 + beam), next);
      next_scores_[static_cast<size_t>(s0 + k)] = t.score;
      tokens_[static_cast<size_t>(r0 + k)] = next;
      parent_[static_cast<size_t>(r0 + k)] = static_cast<int32_t>(r0 + beam);
    }
    for (int64_t k = 0; k < K_; ++k) {
      run_.assign(s0 + k, next_.data(s0 + k), next_.size(s0 + k));
      scores_[static_cast<size_t>(s0 + k)] = next_scores_[static_cast<size_t>(s0 + k)];
    }
    ++s.generated;
    const size_t have = s.ended.size();
    bool done = last;
    if (!done && o_.length_penalty == 0.0f)
      done = s.top_ended && have >= static_cast<size_t>(o_.num_hypotheses);
    else if (!done)
      done = have >= static_cast<size_t>(std::max<long>(1, std::lround(static_cast<float>(K_) * o_.patience)));
    if (done)
      std::stable_sort(s.ended.begin(), s.ended.end(),
                       [](const Hypothesis& x, const Hypothesis& y) { return x.score > y.score; });
    return done;
  }

  // Finished candidates (only among the top K) enter the K slots if better: the K
  // best of (old slots, then candidates), ties to the earlier.
  void update_slots(const BeamSource& s, int64_t s0, int64_t n) {
    const float norm = length_normalizer(s.generated + 1, o_.length_penalty);
    const int64_t K = K_, m = K + n;
    for (int64_t i = 0; i < K; ++i) merged_[static_cast<size_t>(i)] = slots_[static_cast<size_t>(s0 + i)];
    for (int64_t j = 0; j < n; ++j) {
      Slot& f = merged_[static_cast<size_t>(K + j)];
      f.log_prob = cands_[static_cast<size_t>(j)].score;
      // A candidate finishes only with a real score: not from a beam that already
      // ended (its score carries kImpossible) and not through a suppressed token (-inf).
      f.finished = j < K && hit_[static_cast<size_t>(j)] && s.improvable && real_log_prob(f.log_prob);
      f.score = f.log_prob / norm + (f.finished ? 0.0f : kImpossible);
    }
    for (int64_t i = 0; i < m; ++i) order_[static_cast<size_t>(i)] = i;
    // Finished hypotheses before empty slots whatever their score (an extreme
    // length_penalty can push a real score below kImpossible), as Hugging Face
    // fills its K slots before it compares scores.
    std::sort(order_.begin(), order_.begin() + m, [&](int64_t x, int64_t y) {
      const Slot& a = merged_[static_cast<size_t>(x)];
      const Slot& b = merged_[static_cast<size_t>(y)];
      if (a.finished != b.finished) return a.finished;
      const float sx = a.score, sy = b.score;
      if (sx > sy || sx < sy) return sx > sy;
      return x < y;  // ties, and NaN scores, keep the earlier
    });
    for (int64_t i = 0; i < K; ++i) {
      const int64_t from = order_[static_cast<size_t>(i)];
      slots_[static_cast<size_t>(s0 + i)] = merged_[static_cast<size_t>(from)];
      if (from < K) {
        slots_next_.assign(s0 + i, slots_seq_.data(s0 + from), slots_seq_.size(s0 + from));
      } else if (merged_[static_cast<size_t>(from)].finished) {
        const Cand& c = cands_[static_cast<size_t>(from - K)];
        const int64_t beam = c.index / V_;
        const int32_t tok = static_cast<int32_t>(c.index % V_);
        slots_next_.assign(s0 + i, run_.data(s0 + beam), run_.size(s0 + beam), tok == eos_ ? -1 : tok);
      } else {
        slots_next_.assign(s0 + i, nullptr, 0);
      }
    }
    for (int64_t i = 0; i < K; ++i) slots_seq_.assign(s0 + i, slots_next_.data(s0 + i), slots_next_.size(s0 + i));
  }

  // The K best unfinished candidates continue (finished ones sink by -1e9).
  void continue_beams(int64_t r0, int64_t s0, int64_t n) {
    auto running_score = [&](int64_t j) {
      return cands_[static_cast<size_t>(j)].score + (hit_[static_cast<size_t>(j)] ? kImpossible : 0.0f);
    };
    for (int64_t j = 0; j < n; ++j) order_[static_cast<size_t>(j)] = j;
    std::sort(order_.begin(), order_.begin() + n, [&](int64_t x, int64_t y) {
      const float sx = running_score(x), sy = running_score(y);
      return sx > sy || (sx == sy && x < y);
    });
    for (int64_t i = 0; i < K_; ++i) {
      const int64_t j = order_[static_cast<size_t>(i)];
      const Cand& c = cands_[static_cast<size_t>(j)];
      const int64_t beam = c.index / V_;
      const int32_t tok = static_cast<int32_t>(c.index % V_);
      next_.assign(s0 + i, run_.data(s0 + beam), run_.size(s0 + beam), tok);
      next_scores_[static_cast<size_t>(s0 + i)] = running_score(j);
      tokens_[static_cast<size_t>(r0 + i)] = tok;
      parent_[static_cast<size_t>(r0 + i)] = static_cast<int32_t>(r0 + beam);
    }
    for (int64_t i = 0; i < K_; ++i) {
      run_.assign(s0 + i, next_.data(s0 + i), next_.size(s0 + i));
      scores_[static_cast<size_t>(s0 + i)] = next_scores_[static_cast<size_t>(s0 + i)];
    }
  }

  // Done when every slot is filled and either early_stopping is on or the best
  // running beam, at its current length, cannot beat the worst finished one; or when
  // every candidate finished (max_length).
  bool source_done(BeamSource& s, int64_t s0, int64_t n) {
    bool all_filled = true;
    float worst = std::numeric_limits<float>::infinity();  // lowest score of the K slots
    for (int64_t i = 0; i < K_; ++i) {
      all_filled &= slots_[static_cast<size_t>(s0 + i)].finished;
      worst = std::min(worst, slots_[static_cast<size_t>(s0 + i)].score);
    }
    const float best_possible = scores_[static_cast<size_t>(s0)] / length_normalizer(s.generated, o_.length_penalty);
    if (all_filled && (o_.early_stopping || !(best_possible > worst))) s.improvable = false;
    bool all_hit = true;
    for (int64_t j = 0; j < n; ++j) all_hit &= hit_[static_cast<size_t>(j)] != 0;
    return !s.improvable || all_hit;
  }

  // The finished hypotheses of each source, best first (at most num_hypotheses).
  std::vector<std::vector<Hypothesis>> results() const {
    std::vector<std::vector<Hypothesis>> all;
    for (int64_t b = 0; b < B_; ++b) {
      std::vector<Hypothesis> hyps;
      if (o_.ct2_beam) {
        const BeamSource& s = src_[static_cast<size_t>(b)];
        for (size_t i = 0; i < s.ended.size() && i < static_cast<size_t>(o_.num_hypotheses); ++i) {
          hyps.push_back(s.ended[i]);
          hyps.back().probe = s.probe;
        }
        all.push_back(std::move(hyps));
        continue;
      }
      for (int64_t i = 0; i < o_.num_hypotheses; ++i) {
        const Slot& f = slots_[static_cast<size_t>(b * K_ + i)];
        if (!f.finished) break;  // slots are sorted finished-first: the rest are empty
        Hypothesis h;
        h.tokens.assign(slots_seq_.data(b * K_ + i), slots_seq_.data(b * K_ + i) + slots_seq_.size(b * K_ + i));
        h.score = f.score;
        h.log_prob = f.log_prob;
        h.probe = src_[static_cast<size_t>(b)].probe;
        hyps.push_back(std::move(h));
      }
      all.push_back(std::move(hyps));
    }
    return all;
  }

  const Transformer& model_;
  const GenerationOptions& o_;
  const int32_t eos_;
  const int64_t B_, K_, V_, C_;  // C_: candidates kept per step
  const int64_t steps_;          // positions a sequence may take (start tokens included)
  DecoderState state_;
  std::vector<BeamSource> src_;
  // Per source b: running beams b*K + i (two copies, swapped each step), slots b*K + i.
  SequenceStore run_, next_, slots_seq_, slots_next_;
  std::vector<float> scores_, next_scores_;
  std::vector<Slot> slots_, merged_;
  std::vector<int64_t> active_, keep_, order_;
  std::vector<int32_t> tokens_, parent_;
  std::vector<float> logp_;
  std::vector<Cand> cands_;
  std::vector<uint8_t> hit_;
};

void check_options(const Transformer& model, const GenerationOptions& o, int64_t prefix) {
  const auto& c = model.config();
  if (o.max_length < 1) throw std::invalid_argument("max_length must be >= 1");
  if (o.min_length < 0 || o.min_length > o.max_length) throw std::invalid_argument("min_length must be in [0, max_length]");
  if (o.beam_size < 1) throw std::invalid_argument("beam_size must be >= 1");
  if (o.num_hypotheses < 1 || o.num_hypotheses > o.beam_size)
    throw std::invalid_argument("num_hypotheses must be in [1, beam_size]");
  if (o.sampling_topk < 0) throw std::invalid_argument("sampling_topk must be >= 0");
  if (!(o.sampling_topp > 0.0 && o.sampling_topp <= 1.0)) throw std::invalid_argument("sampling_topp must be in (0, 1]");
  if (!(o.sampling_temperature > 0.0) || !std::isfinite(o.sampling_temperature))
    throw std::invalid_argument("sampling_temperature must be > 0");
  if (o.beam_size > 1 && o.sampling_topk != 1) throw std::invalid_argument("sampling needs beam_size == 1");
  const int64_t V = c.tgt_vocab_size;
  if (c.bos_id < 0 || c.bos_id >= V || c.eos_id < 0 || c.eos_id >= V)
    throw std::invalid_argument("bos_id and eos_id must be target ids");
  if (!std::isfinite(o.length_penalty)) throw std::invalid_argument("length_penalty must be finite");
  std::vector<uint8_t> suppressed(static_cast<size_t>(V), 0);
  int64_t blocked = 0;
  for (int32_t t : o.suppress_tokens) {
    if (t < 0 || t >= V) throw std::invalid_argument("suppress_tokens contains an id outside the vocabulary");
    blocked += suppressed[static_cast<size_t>(t)] ? 0 : 1;
    suppressed[static_cast<size_t>(t)] = 1;
  }
  if (prefix > c.max_length || o.max_length > c.max_length - prefix)
    throw std::invalid_argument("start tokens + max_length exceed the model's max_length");
  if (o.forced_bos >= V) throw std::invalid_argument("forced_bos is outside the vocabulary");
  for (int32_t t : o.begin_suppress_tokens)
    if (t < 0 || t >= V) throw std::invalid_argument("begin_suppress_tokens contains an id outside the vocabulary");
  if (o.decoder_start >= V) throw std::invalid_argument("decoder_start is outside the vocabulary");
  if (o.probe_token >= V || o.probe_after >= V) throw std::invalid_argument("probe ids must be target ids");
  if (!(o.patience > 0.0f) || !std::isfinite(o.patience)) throw std::invalid_argument("patience must be > 0");
  if (o.timestamp_begin >= V || o.no_timestamps >= V || o.max_initial_timestamp >= V)
    throw std::invalid_argument("timestamp ids must be target ids");
  if (o.timestamp_begin >= 0 && (o.timestamp_begin <= c.eos_id || o.beam_size < 1))
    throw std::invalid_argument("timestamp_begin must be above eos_id");
  // Every step must have a token it may generate.
  const bool forced_only = (o.forced_eos || o.forced_bos >= 0) && o.max_length == 1;  // the one step is forced
  const bool first_forced = o.forced_bos >= 0 || (o.forced_eos && o.max_length == 1);
  if (blocked == V && !forced_only)
    throw std::invalid_argument("every token id of the vocabulary (" + std::to_string(V) +
                                ") is in suppress_tokens: nothing can be generated");
  const bool eos_free = !suppressed[static_cast<size_t>(c.eos_id)];
  const bool need_non_eos = o.min_length >= 2 || (o.min_length == 1 && !first_forced);
  if (need_non_eos && blocked + (eos_free ? 1 : 0) == V)
    throw std::invalid_argument("min_length=" + std::to_string(o.min_length) +
                                " forbids end-of-sequence, but every other token is in suppress_tokens: nothing "
                                "can be generated at the first step");
}

// Bytes a generate call needs (memory, KV caches, logits, beams), computed in double
// so that absurd options cannot overflow; refused beyond the machine's memory.
void check_generation_size(const Transformer& model, const GenerationOptions& o, int64_t B, int64_t S,
                           int64_t prefix) {
  const auto& c = model.config();
  const double E = static_cast<double>(c.d_model), F = static_cast<double>(c.dim_feedforward);
  const double V = static_cast<double>(c.tgt_vocab_size), L = static_cast<double>(c.num_decoder_layers);
  const double K = static_cast<double>(o.beam_size), T = static_cast<double>(prefix + o.max_length) + 64;
  const double b = static_cast<double>(B), s = static_cast<double>(S) + 64, R = b * K;
  const double floats = b * s * E * 3                      // memory, projected cross keys/values
                        + L * (2 * R * T * E + 2 * b * s * E)  // self and cross attention caches
                        + R * (7 * E + F + 2 * V)           // activations, logits, log-probabilities
                        + 2 * K * T * E;                    // reorder scratch
  const double ints = 4 * R * T + 2 * R;                   // beam and slot sequences
  const double bytes = 4 * floats + 4 * ints + (K > 1 ? 64 * R : 0);
  const double limit = physical_memory_bytes();
  if (bytes > limit)
    throw std::invalid_argument("generation with batch " + std::to_string(B) + ", beam_size " +
                                std::to_string(o.beam_size) + " and max_length " + std::to_string(o.max_length) +
                                " would need about " + human_bytes(bytes) + " (decoder caches of " +
                                std::to_string(c.num_decoder_layers) + " layers, logits over " +
                                std::to_string(c.tgt_vocab_size) + " ids), more than this machine's memory (" +
                                human_bytes(limit) + ")");
}

// Throws std::invalid_argument unless the options, the start tokens and the sizes fit the model.
void check_request(const Transformer& model, const GenerationOptions& o, int64_t B, int64_t S,
                   const std::vector<std::vector<int32_t>>& start_tokens) {
  if (!start_tokens.empty() && static_cast<int64_t>(start_tokens.size()) != B)
    throw std::invalid_argument("start_tokens must have one entry per source");
  check_options(model, o, max_prefix(start_tokens));
  check_generation_size(model, o, B, S, max_prefix(start_tokens));
}

}  // namespace

std::vector<std::vector<Hypothesis>> generate(const Transformer& model, const int32_t* src_ids, int64_t B, int64_t S,
                                              const int32_t* src_lengths,
                                              const std::vector<std::vector<int32_t>>& start_tokens,
                                              const GenerationOptions& o) {
  check_request(model, o, B, S, start_tokens);
  if (B == 0) return {};
  const std::vector<float> memory = encode_memory(model, src_ids, B, S, src_lengths);
  return generate_from_memory(model, memory.data(), B, S, src_lengths, start_tokens, o);
}

std::vector<std::vector<Hypothesis>> generate_from_memory(const Transformer& model, const float* memory, int64_t B,
                                                          int64_t S, const int32_t* src_lengths,
                                                          const std::vector<std::vector<int32_t>>& start_tokens,
                                                          const GenerationOptions& o) {
  check_request(model, o, B, S, start_tokens);
  if (B == 0) return {};
  const int32_t bos = static_cast<int32_t>(o.decoder_start >= 0 ? o.decoder_start : model.config().bos_id);
  const int32_t eos = static_cast<int32_t>(model.config().eos_id);
  if (o.beam_size > 1) return BeamSearch(model, memory, B, S, src_lengths, start_tokens, o, bos, eos).run();
  SamplingRun run(model, memory, B, S, src_lengths, start_tokens, o);
  while (!run.finished()) run.step(nullptr);
  return run.results();
}

struct TokenStream::Impl {
  std::vector<float> memory;
  GenerationOptions options;
  std::unique_ptr<SamplingRun> run;
  std::vector<std::pair<int64_t, int32_t>> produced;
  size_t prefix = 0, seen = 0;
  int32_t eos = 2;
  bool broken = false;  // a step threw (e.g. interrupted): the state is no longer usable
};

TokenStream::TokenStream(const Transformer& model, const int32_t* src_ids, int64_t S,
                         const std::vector<int32_t>& start_tokens, const GenerationOptions& options)
    : impl_(std::make_unique<Impl>()) {
  impl_->options = options;
  check_options(model, options, static_cast<int64_t>(start_tokens.size()));
  check_generation_size(model, options, 1, S, static_cast<int64_t>(start_tokens.size()));
  if (options.beam_size != 1) throw std::invalid_argument("streaming supports greedy search and sampling only");
  impl_->memory = encode_memory(model, src_ids, 1, S, nullptr);
  impl_->run = std::make_unique<SamplingRun>(model, impl_->memory.data(), 1, S, nullptr,
                                             std::vector<std::vector<int32_t>>{start_tokens}, impl_->options);
  impl_->prefix = start_tokens.size();
  impl_->produced.reserve(1);
  impl_->eos = static_cast<int32_t>(model.config().eos_id);
}

TokenStream::~TokenStream() = default;

int32_t TokenStream::next() {
  Impl& s = *impl_;
  if (s.broken) throw std::runtime_error("generate_tokens: this stream was interrupted or failed; start a new one");
  struct Guard {
    bool& broken;
    bool ok = false;
    ~Guard() {
      if (!ok) broken = true;
    }
  } guard{s.broken};
  const int32_t tok = next_token();
  guard.ok = true;
  return tok;
}

int32_t TokenStream::next_token() {
  Impl& s = *impl_;
  while (!s.run->finished()) {
    s.produced.clear();
    s.run->step(&s.produced);
    const int32_t tok = s.produced.empty() ? -1 : s.produced[0].second;
    if (s.seen++ < s.prefix) continue;  // forced start tokens are not reported
    if (tok == s.eos) return -1;
    return tok;
  }
  return -1;
}

}  // namespace pt::model
