#include "model/weight_table.h"

#include <stdexcept>
#include <unordered_set>

#include "model/transformer.h"

namespace pt::model {

namespace names {

Attention attention(const std::string& p) { return {p + "in_proj_weight", p + "in_proj_bias", pair(p + "out_proj.")}; }

EncoderLayer encoder_layer(int64_t i) {
  const std::string p = "encoder.layers." + std::to_string(i) + ".";
  return {attention(p + "self_attn."), pair(p + "linear1."), pair(p + "linear2."), pair(p + "norm1."),
          pair(p + "norm2.")};
}

DecoderLayer decoder_layer(int64_t i) {
  const std::string p = "decoder.layers." + std::to_string(i) + ".";
  return {attention(p + "self_attn."), attention(p + "multihead_attn."), pair(p + "linear1."), pair(p + "linear2."),
          pair(p + "norm1."), pair(p + "norm2."), pair(p + "norm3.")};
}

Side source() {
  return {"src_embed.weight", "src_pos_embed.weight", "src_type_embed.weight", pair("src_embed_norm."),
          pair("encoder.norm.")};
}

Side target() {
  return {"tgt_embed.weight", "tgt_pos_embed.weight", "", pair("tgt_embed_norm."), pair("decoder.norm.")};
}

Pair generator() { return pair("generator."); }

}  // namespace names

namespace {
void add_pair(WeightTable& t, const names::Pair& p, int64_t out, int64_t in) {
  t.push_back({p.weight, in > 0 ? std::vector<int64_t>{out, in} : std::vector<int64_t>{out}});
  t.push_back({p.bias, {out}});
}
void add_attention(WeightTable& t, const names::Attention& a, int64_t E) {
  t.push_back({a.in_proj_weight, {3 * E, E}});
  t.push_back({a.in_proj_bias, {3 * E}});
  add_pair(t, a.out_proj, E, E);
}
}  // namespace

WeightTable weight_table(const TransformerConfig& c, bool encoder_only) {
  const int64_t E = c.d_model, F = c.dim_feedforward;
  WeightTable t;
  const names::Side src = names::source(), tgt = names::target();
  if (c.src_vocab_size > 0) {  // else the encoder takes float inputs: no source embeddings
    t.push_back({src.embed, {c.src_vocab_size, E}});
    if (c.positional == Positional::kLearned) t.push_back({src.pos_embed, {c.max_length, E}});
    if (c.type_vocab_size > 0) t.push_back({src.type_embed, {c.type_vocab_size, E}});
    if (c.embedding_norm) add_pair(t, src.embed_norm, E, 0);
  }
  for (int64_t i = 0; i < c.num_encoder_layers; ++i) {
    const names::EncoderLayer l = names::encoder_layer(i);
    add_attention(t, l.self_attn, E);
    add_pair(t, l.linear1, F, E);
    add_pair(t, l.linear2, E, F);
    add_pair(t, l.norm1, E, 0);
    add_pair(t, l.norm2, E, 0);
  }
  if (c.final_norm) add_pair(t, src.final_norm, E, 0);
  if (encoder_only) return t;
  if (!c.share_embeddings) t.push_back({tgt.embed, {c.tgt_vocab_size, E}});
  if (c.positional == Positional::kLearned) t.push_back({tgt.pos_embed, {c.max_length, E}});
  if (c.embedding_norm) add_pair(t, tgt.embed_norm, E, 0);
  for (int64_t i = 0; i < c.num_decoder_layers; ++i) {
    const names::DecoderLayer l = names::decoder_layer(i);
    add_attention(t, l.self_attn, E);
    add_attention(t, l.cross_attn, E);
    add_pair(t, l.linear1, F, E);
    add_pair(t, l.linear2, E, F);
    add_pair(t, l.norm1, E, 0);
    add_pair(t, l.norm2, E, 0);
    add_pair(t, l.norm3, E, 0);
  }
  if (c.final_norm) add_pair(t, tgt.final_norm, E, 0);
  const names::Pair gen = names::generator();
  if (!c.tie_output) t.push_back({gen.weight, {c.tgt_vocab_size, E}});
  if (c.output_bias) t.push_back({gen.bias, {c.tgt_vocab_size}});
  return t;
}

namespace {
std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "(";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + (s.size() == 1 ? ",)" : ")");
}
}  // namespace

void check_weights(const WeightMap& weights, const WeightTable& table) {
  std::vector<std::string> problems;
  std::unordered_set<std::string> known;
  for (const auto& [name, shape] : table) {
    known.insert(name);
    auto it = weights.find(name);
    if (it == weights.end())
      problems.push_back("missing weight '" + name + "' " + shape_str(shape));
    else if (it->second.shape != shape)
      problems.push_back("weight '" + name + "' has shape " + shape_str(it->second.shape) + ", expected " +
                         shape_str(shape));
  }
  for (const auto& [name, view] : weights)
    if (!known.count(name)) problems.push_back("unexpected weight '" + name + "'");
  if (problems.empty()) return;
  std::string msg = std::to_string(problems.size()) + " problem(s) with the weights: " + problems[0];
  for (size_t i = 1; i < problems.size() && i < 5; ++i) msg += "; " + problems[i];
  if (problems.size() > 5) msg += "; ...";
  throw std::invalid_argument(msg);
}

}  // namespace pt::model
