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

// ---------------------------------------------------------------------------
// Greedy search and sampling: one row per source.
// ---------------------------------------------------------------------------

// Picks the next token of one row from its logits.
class TokenChooser {
 public:
  TokenChooser(const GenerationOptions& o, int64_t vocab) : o_(o), vocab_(vocab), allowed_(static_cast<size_t>(vocab), 1) {
    for (int32_t t : o.suppress_tokens) allowed_[static_cast<size_t>(t)] = 0;
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
  int32_t choose_any(const float* logits, int32_t blocked, int32_t only, std::mt19937_64& rng) {
    if (only >= 0) return only;
    if (greedy()) {
      int32_t best = -1;
      float bv = kNegInf;
      for (int64_t v = 0; v < vocab_; ++v)
        if (v != blocked && allowed_[static_cast<size_t>(v)] && (logits[v] > bv || best < 0)) {
          best = static_cast<int32_t>(v);
          bv = logits[v];
        }
      return best;
    }
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
};

struct SampledSource {
  std::vector<int32_t> prefix, out;
  int64_t generated = 0;
  float log_prob = 0.0f;
  bool done = false;
  std::mt19937_64 rng;
};

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
        bos_(static_cast<int32_t>(model.config().bos_id)),
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
      int32_t next;
      if (s.out.size() < s.prefix.size()) {
        next = s.prefix[s.out.size()];
        s.out.push_back(next);
      } else {
        const int32_t blocked = s.generated < o_.min_length ? eos_ : -1;
        // Hugging Face's order: a forced EOS at max_length overrides a forced first token.
        const bool force_eos = o_.forced_eos && s.generated + 1 == o_.max_length;
        const int32_t forced = force_eos ? eos_ : (s.generated == 0 && o_.forced_bos >= 0 ? o_.forced_bos : -1);
        next = chooser_.choose(logits + r * V, blocked, forced, s.rng);
        if (need_logp && forced < 0) s.log_prob += logp_[static_cast<size_t>(r * V + next)];
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
  bool improvable = true;
  bool done = false;
};

// All sources' beams: running sequences and scores, and the K finished slots,
// preallocated so that the step loop never allocates.
std::vector<std::vector<Hypothesis>> beam_search(const Transformer& model, const float* memory, int64_t B, int64_t S,
                                                 const int32_t* src_lengths,
                                                 const std::vector<std::vector<int32_t>>& start_tokens,
                                                 const GenerationOptions& o, int32_t bos, int32_t eos) {
  const int64_t K = o.beam_size, V = model.config().tgt_vocab_size, C = 2 * K;  // C candidates kept per step
  const int64_t steps = max_prefix(start_tokens) + o.max_length;
  DecoderState state(model, memory, B, S, src_lengths, K, steps);
  std::vector<BeamSource> src(static_cast<size_t>(B));
  // Per source b: running beams b*K + i (two copies, swapped each step), slots b*K + i.
  SequenceStore run(B * K, steps), next(B * K, steps), slots_seq(B * K, steps), slots_next(B * K, steps);
  std::vector<float> scores(static_cast<size_t>(B * K), kImpossible), next_scores(static_cast<size_t>(B * K));
  std::vector<Slot> slots(static_cast<size_t>(B * K)), merged(static_cast<size_t>(K + C));
  std::vector<int64_t> merged_from(static_cast<size_t>(K + C));  // < K: old slot i; else candidate - K
  std::vector<int64_t> active, keep, order(static_cast<size_t>(K + C));
  active.reserve(static_cast<size_t>(B));
  keep.reserve(static_cast<size_t>(B));
  for (int64_t b = 0; b < B; ++b) {
    if (!start_tokens.empty()) src[static_cast<size_t>(b)].prefix = start_tokens[static_cast<size_t>(b)];
    scores[static_cast<size_t>(b * K)] = 0.0f;
    active.push_back(b);
  }
  std::vector<int32_t> tokens(static_cast<size_t>(B * K), bos), parent(static_cast<size_t>(B * K));
  std::vector<float> logp(static_cast<size_t>(B * K * V));
  struct Cand {
    float score;
    int64_t index;  // beam * V + token
  };
  std::vector<Cand> cands;
  cands.reserve(static_cast<size_t>(C));
  std::vector<uint8_t> hit(static_cast<size_t>(C));
  auto better = [](const Cand& x, const Cand& y) { return x.score > y.score || (x.score == y.score && x.index < y.index); };

  while (!active.empty()) {
    const int64_t R = state.rows();
    const float* logits = state.advance(tokens.data());
    model.kernels().log_softmax(logits, logp.data(), R, V);
    keep.clear();
    for (int64_t a = 0; a < static_cast<int64_t>(active.size()); ++a) {
      const int64_t b = active[static_cast<size_t>(a)], r0 = a * K, s0 = b * K;
      BeamSource& s = src[static_cast<size_t>(b)];
      if (s.forced < static_cast<int64_t>(s.prefix.size())) {  // forced start tokens
        const int32_t tok = s.prefix[static_cast<size_t>(s.forced++)];
        for (int64_t i = 0; i < K; ++i) {
          run.push(s0 + i, tok);
          tokens[static_cast<size_t>(r0 + i)] = tok;
          parent[static_cast<size_t>(r0 + i)] = static_cast<int32_t>(r0 + i);
        }
        keep.push_back(a);
        continue;
      }
      float* lp = logp.data() + r0 * V;
      // Logits processors, on log-probabilities, in Hugging Face's order.
      if (s.generated < o.min_length)
        for (int64_t i = 0; i < K; ++i) lp[i * V + eos] = kNegInf;
      for (int32_t t : o.suppress_tokens)
        for (int64_t i = 0; i < K; ++i) lp[i * V + t] = kNegInf;
      if (o.forced_bos >= 0 && s.generated == 0)
        for (int64_t i = 0; i < K; ++i) {
          std::fill(lp + i * V, lp + (i + 1) * V, kNegInf);
          lp[i * V + o.forced_bos] = 0.0f;
        }
      if (o.forced_eos && s.generated + 1 == o.max_length)
        for (int64_t i = 0; i < K; ++i) {
          std::fill(lp + i * V, lp + (i + 1) * V, kNegInf);
          lp[i * V + eos] = 0.0f;
        }
      // Top 2K of score[i] + logp[i][v] over all beams i and tokens v (a heap whose
      // front is the worst kept candidate).
      cands.clear();
      for (int64_t i = 0; i < K; ++i) {
        const float base = scores[static_cast<size_t>(s0 + i)];
        for (int64_t v = 0; v < V; ++v) {
          const Cand c{base + lp[i * V + v], i * V + v};
          if (static_cast<int64_t>(cands.size()) < C) {
            cands.push_back(c);
            std::push_heap(cands.begin(), cands.end(), better);
          } else if (better(c, cands.front())) {
            std::pop_heap(cands.begin(), cands.end(), better);
            cands.back() = c;
            std::push_heap(cands.begin(), cands.end(), better);
          }
        }
      }
      std::sort(cands.begin(), cands.end(), better);  // best first
      const int64_t n = static_cast<int64_t>(cands.size());
      const bool at_max = s.generated + 1 >= o.max_length;
      for (int64_t j = 0; j < n; ++j)
        hit[static_cast<size_t>(j)] = at_max || cands[static_cast<size_t>(j)].index % V == eos;

      // Finished candidates (only among the top K) enter the K slots if better: the
      // K best of (old slots, then candidates), ties to the earlier.
      const float norm = length_normalizer(s.generated + 1, o.length_penalty);
      const int64_t m = K + n;
      for (int64_t i = 0; i < K; ++i) {
        merged[static_cast<size_t>(i)] = slots[static_cast<size_t>(s0 + i)];
        merged_from[static_cast<size_t>(i)] = i;
      }
      for (int64_t j = 0; j < n; ++j) {
        Slot& f = merged[static_cast<size_t>(K + j)];
        f.log_prob = cands[static_cast<size_t>(j)].score;
        // A candidate finishes only with a real score: not from a beam that already
        // ended (its score carries kImpossible) and not through a suppressed token (-inf).
        f.finished = j < K && hit[static_cast<size_t>(j)] && s.improvable && real_log_prob(f.log_prob);
        f.score = f.log_prob / norm + (f.finished ? 0.0f : kImpossible);
        merged_from[static_cast<size_t>(K + j)] = K + j;
      }
      for (int64_t i = 0; i < m; ++i) order[static_cast<size_t>(i)] = i;
      // Finished hypotheses before empty slots whatever their score (an extreme
      // length_penalty can push a real score below kImpossible), as Hugging Face
      // fills its K slots before it compares scores.
      std::sort(order.begin(), order.begin() + m, [&](int64_t x, int64_t y) {
        const Slot& a = merged[static_cast<size_t>(x)];
        const Slot& b = merged[static_cast<size_t>(y)];
        if (a.finished != b.finished) return a.finished;
        const float sx = a.score, sy = b.score;
        if (sx > sy || sx < sy) return sx > sy;
        return x < y;  // ties, and NaN scores, keep the earlier
      });
      for (int64_t i = 0; i < K; ++i) {
        const int64_t from = order[static_cast<size_t>(i)];
        slots[static_cast<size_t>(s0 + i)] = merged[static_cast<size_t>(from)];
        if (from < K) {
          slots_next.assign(s0 + i, slots_seq.data(s0 + from), slots_seq.size(s0 + from));
        } else if (merged[static_cast<size_t>(from)].finished) {
          const Cand& c = cands[static_cast<size_t>(from - K)];
          const int64_t beam = c.index / V;
          const int32_t tok = static_cast<int32_t>(c.index % V);
          slots_next.assign(s0 + i, run.data(s0 + beam), run.size(s0 + beam), tok == eos ? -1 : tok);
        } else {
          slots_next.assign(s0 + i, nullptr, 0);
        }
      }
      for (int64_t i = 0; i < K; ++i) slots_seq.assign(s0 + i, slots_next.data(s0 + i), slots_next.size(s0 + i));

      // The K best unfinished candidates continue (finished ones sink by -1e9).
      auto running_score = [&](int64_t j) {
        return cands[static_cast<size_t>(j)].score + (hit[static_cast<size_t>(j)] ? kImpossible : 0.0f);
      };
      for (int64_t j = 0; j < n; ++j) order[static_cast<size_t>(j)] = j;
      std::sort(order.begin(), order.begin() + n, [&](int64_t x, int64_t y) {
        const float sx = running_score(x), sy = running_score(y);
        return sx > sy || (sx == sy && x < y);
      });
      for (int64_t i = 0; i < K; ++i) {
        const int64_t j = order[static_cast<size_t>(i)];
        const Cand& c = cands[static_cast<size_t>(j)];
        const int64_t beam = c.index / V;
        const int32_t tok = static_cast<int32_t>(c.index % V);
        next.assign(s0 + i, run.data(s0 + beam), run.size(s0 + beam), tok);
        next_scores[static_cast<size_t>(s0 + i)] = running_score(j);
        tokens[static_cast<size_t>(r0 + i)] = tok;
        parent[static_cast<size_t>(r0 + i)] = static_cast<int32_t>(r0 + beam);
      }
      for (int64_t i = 0; i < K; ++i) {
        run.assign(s0 + i, next.data(s0 + i), next.size(s0 + i));
        scores[static_cast<size_t>(s0 + i)] = next_scores[static_cast<size_t>(s0 + i)];
      }
      ++s.generated;

      // Stop when the best running beam, at its current length, cannot beat the
      // worst finished one (every slot filled), or at max_length.
      bool all_filled = true;
      float worst = std::numeric_limits<float>::infinity();  // lowest score of the K slots
      for (int64_t i = 0; i < K; ++i) {
        all_filled &= slots[static_cast<size_t>(s0 + i)].finished;
        worst = std::min(worst, slots[static_cast<size_t>(s0 + i)].score);
      }
      const float best_possible = scores[static_cast<size_t>(s0)] / length_normalizer(s.generated, o.length_penalty);
      if (all_filled && (o.early_stopping || !(best_possible > worst))) s.improvable = false;
      bool all_hit = true;
      for (int64_t j = 0; j < n; ++j) all_hit &= hit[static_cast<size_t>(j)] != 0;
      s.done = !s.improvable || all_hit;
      if (!s.done) keep.push_back(a);
    }
    // Rows follow their parents; finished sources leave the batch.
    state.reorder(parent.data());
    if (keep.size() != active.size()) {
      for (size_t n = 0; n < keep.size(); ++n) {
        const int64_t a = keep[n];
        for (int64_t i = 0; i < K; ++i)
          tokens[n * static_cast<size_t>(K) + static_cast<size_t>(i)] = tokens[static_cast<size_t>(a * K + i)];
        active[n] = active[static_cast<size_t>(a)];
      }
      state.keep_sources(keep);
      active.resize(keep.size());
    }
  }
  std::vector<std::vector<Hypothesis>> all;
  for (int64_t b = 0; b < B; ++b) {
    std::vector<Hypothesis> hyps;
    for (int64_t i = 0; i < o.num_hypotheses; ++i) {
      const Slot& f = slots[static_cast<size_t>(b * K + i)];
      if (!f.finished) break;  // slots are sorted finished-first: the rest are empty
      Hypothesis h;
      h.tokens.assign(slots_seq.data(b * K + i), slots_seq.data(b * K + i) + slots_seq.size(b * K + i));
      h.score = f.score;
      h.log_prob = f.log_prob;
      hyps.push_back(std::move(h));
    }
    all.push_back(std::move(hyps));
  }
  return all;
}

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

}  // namespace

std::vector<std::vector<Hypothesis>> generate(const Transformer& model, const int32_t* src_ids, int64_t B, int64_t S,
                                              const int32_t* src_lengths,
                                              const std::vector<std::vector<int32_t>>& start_tokens,
                                              const GenerationOptions& o) {
  if (!start_tokens.empty() && static_cast<int64_t>(start_tokens.size()) != B)
    throw std::invalid_argument("start_tokens must have one entry per source");
  check_options(model, o, max_prefix(start_tokens));
  check_generation_size(model, o, B, S, max_prefix(start_tokens));
  if (B == 0) return {};
  const std::vector<float> memory = encode_memory(model, src_ids, B, S, src_lengths);
  const int32_t bos = static_cast<int32_t>(model.config().bos_id), eos = static_cast<int32_t>(model.config().eos_id);
  if (o.beam_size > 1) return beam_search(model, memory.data(), B, S, src_lengths, start_tokens, o, bos, eos);
  SamplingRun run(model, memory.data(), B, S, src_lengths, start_tokens, o);
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
