// pytransformer._core.TransformerModel: the C++ model behind pytransformer.Transformer.
// The Python class validates and converts arguments with friendly messages; the
// checks repeated here only keep direct callers of _core from reading out of bounds.
#include <pybind11/stl.h>

#include <cmath>
#include <limits>
#include <memory>
#include <type_traits>
#include <string>

#include "bindings/arrays.h"
#include "bindings/interrupt.h"
#include "model/search.h"
#include "model/transformer.h"

namespace pt::bindings {

namespace {

using IntArray = py::array_t<int32_t, py::array::c_style | py::array::forcecast>;

template <class T>
T get(const py::dict& d, const char* key) {
  if (!d.contains(key)) throw py::value_error(std::string("config is missing '") + key + "'");
  py::handle v = d[key];
  if constexpr (std::is_same_v<T, bool>) {
    if (!py::isinstance<py::bool_>(v)) throw py::type_error(std::string("config '") + key + "' must be a bool");
  } else if constexpr (std::is_integral_v<T>) {
    if (py::isinstance<py::bool_>(v) || !py::isinstance<py::int_>(v))
      throw py::type_error(std::string("config '") + key + "' must be an int");
  } else if constexpr (std::is_floating_point_v<T>) {
    if (py::isinstance<py::bool_>(v) || !(py::isinstance<py::int_>(v) || py::isinstance<py::float_>(v)))
      throw py::type_error(std::string("config '") + key + "' must be a number");
  } else {
    if (!py::isinstance<py::str>(v)) throw py::type_error(std::string("config '") + key + "' must be a str");
  }
  try {
    return v.cast<T>();
  } catch (const py::cast_error&) {
    throw py::value_error(std::string("config '") + key + "' = " + py::repr(v).cast<std::string>().substr(0, 40) +
                          " does not fit the C++ type");
  }
}

// A Python int in [lo, hi]; ValueError naming `name` otherwise (also when it does not
// fit in 64 bits).
int64_t option_value(py::handle v, const char* name, int64_t lo, int64_t hi) {
  int overflow = 0;
  const long long x = PyLong_AsLongLongAndOverflow(v.ptr(), &overflow);
  if (x == -1 && PyErr_Occurred()) throw py::error_already_set();
  if (overflow != 0 || x < lo || x > hi)
    throw py::value_error(std::string(name) + " = " + std::string(py::repr(v)).substr(0, 40) + " is outside [" +
                          std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return x;
}

// An int in [lo, INT32_MAX] (sizes and ids are 32-bit in the kernels' index math).
int64_t get_size(const py::dict& d, const char* key, int64_t lo) {
  if (!d.contains(key)) throw py::value_error(std::string("config is missing '") + key + "'");
  py::handle v = d[key];
  if (py::isinstance<py::bool_>(v) || !py::isinstance<py::int_>(v))
    throw py::type_error(std::string("config '") + key + "' must be an int");
  return option_value(v, (std::string("config '") + key + "'").c_str(), lo, 2147483647);
}

float get_finite(const py::dict& d, const char* key) {
  const double v = get<double>(d, key);
  const float f = static_cast<float>(v);
  if (!std::isfinite(f)) throw py::value_error(std::string("config '") + key + "' must be finite in float32");
  return f;
}

model::TransformerConfig config_from_dict(const py::dict& d) {
  model::TransformerConfig c;
  c.d_model = get_size(d, "d_model", 1);
  c.nhead = get_size(d, "nhead", 1);
  c.num_encoder_layers = get_size(d, "num_encoder_layers", 0);
  c.num_decoder_layers = get_size(d, "num_decoder_layers", 0);
  c.dim_feedforward = get_size(d, "dim_feedforward", 1);
  const auto act = get<std::string>(d, "activation");
  if (act == "relu")
    c.activation = kernels::Activation::kRelu;
  else if (act == "gelu")
    c.activation = kernels::Activation::kGelu;
  else if (act == "silu")
    c.activation = kernels::Activation::kSilu;
  else
    throw py::value_error("unsupported activation '" + act + "'");
  c.norm_first = get<bool>(d, "norm_first");
  c.layer_norm_eps = get_finite(d, "layer_norm_eps");
  c.final_norm = get<bool>(d, "final_norm");
  c.embedding_scale = get_finite(d, "embedding_scale");
  c.src_vocab_size = get_size(d, "src_vocab_size", 0);  // 0: the encoder takes float inputs
  c.tgt_vocab_size = get_size(d, "tgt_vocab_size", 1);
  c.share_embeddings = get<bool>(d, "share_embeddings");
  c.tie_output = get<bool>(d, "tie_output");
  c.output_bias = get<bool>(d, "output_bias");
  c.max_length = get_size(d, "max_length", 1);
  const auto pos = get<std::string>(d, "positional");
  if (pos == "sinusoidal")
    c.positional = model::Positional::kSinusoidal;
  else if (pos == "sinusoidal_concat")
    c.positional = model::Positional::kSinusoidalConcat;
  else if (pos == "learned")
    c.positional = model::Positional::kLearned;
  else
    throw py::value_error("unsupported positional '" + pos + "'");
  c.type_vocab_size = get_size(d, "type_vocab_size", 0);
  c.embedding_norm = get<bool>(d, "embedding_norm");
  c.pad_id = get_size(d, "pad_id", 0);
  c.bos_id = get_size(d, "bos_id", 0);
  c.eos_id = get_size(d, "eos_id", 0);
  if (c.d_model < 1 || c.nhead < 1 || c.d_model % c.nhead || c.dim_feedforward < 1 || c.num_encoder_layers < 0 ||
      c.num_decoder_layers < 0 || c.src_vocab_size < 0 || c.tgt_vocab_size < 1 || c.max_length < 1)
    throw py::value_error("invalid model sizes in config");
  if (c.share_embeddings && c.src_vocab_size != c.tgt_vocab_size)
    throw py::value_error("share_embeddings needs src_vocab_size == tgt_vocab_size");
  return c;
}

IntArray int_array(py::handle obj, const char* name, int ndim) {
  auto a = ensure_aligned<int32_t>(obj);
  if (!a) throw py::type_error(std::string(name) + " must be an int32 array");
  if (a.ndim() != ndim)
    throw py::value_error(std::string(name) + " must have " + std::to_string(ndim) + " dimensions, got shape " +
                          shape_str(a));
  return a;
}

void check_ids(const IntArray& ids, int64_t vocab, const char* name) {
  const int32_t* p = ids.data();
  for (py::ssize_t i = 0; i < ids.size(); ++i)
    if (p[i] < 0 || p[i] >= vocab)
      throw py::value_error(std::string(name) + " contains id " + std::to_string(p[i]) + ", outside [0, " +
                            std::to_string(vocab) + ")");
}

std::optional<IntArray> lengths_array(py::handle obj, int64_t B, int64_t S) {
  if (obj.is_none()) return std::nullopt;
  IntArray l = int_array(obj, "src_lengths", 1);
  if (l.shape(0) != B) throw py::value_error("src_lengths must have shape (" + std::to_string(B) + ",)");
  for (int64_t b = 0; b < B; ++b)
    if (l.data()[b] < 0 || l.data()[b] > S)
      throw py::value_error("src_lengths[" + std::to_string(b) + "] = " + std::to_string(l.data()[b]) +
                            " is outside [0, " + std::to_string(S) + "]");
  return l;
}

// name -> weight view over contiguous float32 arrays, kept alive in *keep during the load.
using Int8Array = py::array_t<int8_t, py::array::c_style | py::array::forcecast>;
// The arrays a WeightMap points into (kept alive for the load).
struct WeightKeep {
  std::vector<FloatArray> floats;
  std::vector<Int8Array> int8;
};

model::WeightMap weight_map(const py::dict& weights, const char* fn, WeightKeep* keep) {
  model::WeightMap map;
  keep->floats.reserve(weights.size());
  keep->int8.reserve(weights.size());
  // int8 GEMM weights come with their scales under name + "_scale": those are
  // consumed with their weight, not weights of their own.
  auto is_int8 = [](py::handle a) {
    return py::isinstance<py::array>(a) && py::reinterpret_borrow<py::array>(a).dtype().is(py::dtype::of<int8_t>());
  };
  const std::string suffix = model::kScaleSuffix;
  for (auto item : weights) {
    const std::string name = item.first.cast<std::string>();
    if (name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) {
      const std::string base = name.substr(0, name.size() - suffix.size());
      if (weights.contains(base) && is_int8(weights[py::str(base)])) continue;
    }
    if (is_int8(item.second)) {
      keep->int8.push_back(ensure_aligned<int8_t>(item.second));
      const Int8Array& q = keep->int8.back();
      if (q.ndim() != 2)
        throw py::value_error(std::string(fn) + ": int8 weight '" + name + "' must have 2 dimensions, got " +
                              std::to_string(q.ndim()));
      const std::string sname = name + suffix;
      if (!weights.contains(sname))
        throw py::value_error(std::string(fn) + ": int8 weight '" + name + "' comes without its scales '" + sname +
                              "'");
      keep->floats.push_back(float_array(weights[py::str(sname)], fn, sname.c_str(), 1));
      const FloatArray& sc = keep->floats.back();
      if (sc.shape(0) != q.shape(0))
        throw py::value_error(std::string(fn) + ": '" + sname + "' must have shape (" + std::to_string(q.shape(0)) +
                              ",) (a scale per row of '" + name + "'), got " + shape_str(sc));
      map[name] = model::WeightView{nullptr, {q.shape(0), q.shape(1)}, q.data(), sc.data()};
      continue;
    }
    keep->floats.push_back(float_array(item.second, fn, name.c_str()));
    const FloatArray& a = keep->floats.back();
    map[name] = model::WeightView{a.data(), std::vector<int64_t>(a.shape(), a.shape() + a.ndim())};
  }
  return map;
}

model::ComputeType compute_type_arg(const std::string& s) {
  if (s == "float32") return model::ComputeType::kFloat32;
  if (s == "int8") return model::ComputeType::kInt8;
  throw py::value_error("compute_type must be 'float32' or 'int8', got '" + s + "'");
}

const char* compute_type_name(model::ComputeType c) { return c == model::ComputeType::kInt8 ? "int8" : "float32"; }

// Exported weights into a dict: one array per name (a name asked for twice, as the
// two halves of the cross-attention in_proj, gets the same array); int8 weights as
// stored when `int8`, else dequantized.
model::WeightSinks dict_sinks(py::dict& out, bool int8) {
  model::WeightSinks s;
  s.floats = [&out](const std::string& name, const std::vector<int64_t>& shape) {
    py::str key(name);
    if (out.contains(key)) return py::cast<py::array_t<float>>(out[key]).mutable_data();
    py::array_t<float> a = new_float_array(shape);
    out[key] = a;
    return a.mutable_data();
  };
  if (int8)
    s.int8 = [&out](const std::string& name, const std::vector<int64_t>& shape) {
      py::str key(name);
      if (out.contains(key)) return py::cast<py::array_t<int8_t>>(out[key]).mutable_data();
      py::array_t<int8_t> a(shape);
      out[key] = a;
      return a.mutable_data();
    };
  return s;
}

// The keyword arguments of _core.GenerationOptions, each converted on its own with a
// message naming it (never pybind11's "incompatible function arguments"). Ranges that
// depend on the model (ids below the vocabulary size) are checked by model::generate.
int64_t int_arg(py::handle v, const char* name, int64_t lo, int64_t hi) {
  if (py::isinstance<py::bool_>(v) || !py::isinstance<py::int_>(v))
    throw py::type_error(std::string(name) + " must be an int, got " + std::string(py::str(py::type::of(v).attr("__name__"))));
  return option_value(v, name, lo, hi);
}

bool bool_arg(py::handle v, const char* name) {
  if (!py::isinstance<py::bool_>(v)) throw py::type_error(std::string(name) + " must be a bool");
  return v.cast<bool>();
}

double number_arg(py::handle v, const char* name) {
  if (py::isinstance<py::bool_>(v) || !(py::isinstance<py::int_>(v) || py::isinstance<py::float_>(v)))
    throw py::type_error(std::string(name) + " must be a number");
  const double x = PyFloat_AsDouble(v.ptr());
  if (x == -1.0 && PyErr_Occurred()) {
    PyErr_Clear();
    throw py::value_error(std::string(name) + " = " + std::string(py::repr(v)).substr(0, 40) + " does not fit a double");
  }
  return x;
}

constexpr int64_t kInt32Max = 2147483647;

model::GenerationOptions make_generation_options(py::handle max_length, py::handle min_length, py::handle beam_size,
                                                 py::handle length_penalty, py::handle num_hypotheses,
                                                 py::handle sampling_topk, py::handle sampling_topp,
                                                 py::handle sampling_temperature, py::handle seed,
                                                 py::handle return_scores, py::handle suppress_tokens,
                                                 py::handle forced_eos, py::handle forced_bos,
                                                 py::handle early_stopping, py::handle begin_suppress_tokens,
                                                 py::handle decoder_start, py::handle timestamp_begin,
                                                 py::handle no_timestamps, py::handle max_initial_timestamp,
                                                 py::handle renormalize, py::handle probe_token,
                                                 py::handle probe_after, py::handle ct2_beam,
                                                 py::handle patience) {
  model::GenerationOptions g;
  g.max_length = int_arg(max_length, "max_length", 1, kInt32Max);
  g.min_length = int_arg(min_length, "min_length", 0, kInt32Max);
  g.beam_size = int_arg(beam_size, "beam_size", 1, kInt32Max);
  const double lp = number_arg(length_penalty, "length_penalty");
  g.length_penalty = static_cast<float>(lp);
  if (!std::isfinite(g.length_penalty)) throw py::value_error("length_penalty must be finite in float32");
  g.num_hypotheses = int_arg(num_hypotheses, "num_hypotheses", 1, kInt32Max);
  g.sampling_topk = int_arg(sampling_topk, "sampling_topk", 0, std::numeric_limits<int64_t>::max());
  g.sampling_topp = number_arg(sampling_topp, "sampling_topp");
  g.sampling_temperature = number_arg(sampling_temperature, "sampling_temperature");
  if (py::isinstance<py::bool_>(seed) || !py::isinstance<py::int_>(seed)) throw py::type_error("seed must be an int");
  const unsigned long long sd = PyLong_AsUnsignedLongLong(seed.ptr());
  if (sd == static_cast<unsigned long long>(-1) && PyErr_Occurred()) {
    PyErr_Clear();
    throw py::value_error("seed = " + std::string(py::repr(seed)).substr(0, 40) + " is outside [0, 2**64 - 1]");
  }
  g.seed = sd;
  g.return_scores = bool_arg(return_scores, "return_scores");
  if (py::isinstance<py::str>(suppress_tokens) || !py::isinstance<py::iterable>(suppress_tokens))
    throw py::type_error("suppress_tokens must be a list of ints");
  for (py::handle t : suppress_tokens)
    g.suppress_tokens.push_back(static_cast<int32_t>(int_arg(t, "suppress_tokens", 0, kInt32Max)));
  g.forced_eos = bool_arg(forced_eos, "forced_eos");
  g.forced_bos = forced_bos.is_none() ? -1 : static_cast<int32_t>(int_arg(forced_bos, "forced_bos", 0, kInt32Max));
  g.early_stopping = bool_arg(early_stopping, "early_stopping");
  if (py::isinstance<py::str>(begin_suppress_tokens) || !py::isinstance<py::iterable>(begin_suppress_tokens))
    throw py::type_error("begin_suppress_tokens must be a list of ints");
  for (py::handle t : begin_suppress_tokens)
    g.begin_suppress_tokens.push_back(static_cast<int32_t>(int_arg(t, "begin_suppress_tokens", 0, kInt32Max)));
  auto optional_id = [](py::handle v, const char* name) {
    return v.is_none() ? -1 : static_cast<int32_t>(int_arg(v, name, 0, kInt32Max));
  };
  g.decoder_start = optional_id(decoder_start, "decoder_start");
  g.timestamp_begin = optional_id(timestamp_begin, "timestamp_begin");
  g.no_timestamps = optional_id(no_timestamps, "no_timestamps");
  g.max_initial_timestamp = optional_id(max_initial_timestamp, "max_initial_timestamp");
  g.renormalize = bool_arg(renormalize, "renormalize");
  g.probe_token = optional_id(probe_token, "probe_token");
  g.probe_after = optional_id(probe_after, "probe_after");
  g.ct2_beam = bool_arg(ct2_beam, "ct2_beam");
  g.patience = static_cast<float>(number_arg(patience, "patience"));
  return g;
}

class PyTransformer {
 public:
  PyTransformer(const py::dict& config, const py::dict& weights, const std::string& compute_type) {
    model::TransformerConfig cfg = config_from_dict(config);
    cfg.compute = compute_type_arg(compute_type);
    WeightKeep keep;
    const model::WeightMap map = weight_map(weights, "Transformer", &keep);
    SigintScope watch;
    py::gil_scoped_release release;
    model_ = std::make_unique<model::Transformer>(cfg, map);
  }

  void check_takes_ids() const {
    if (model_->takes_features())
      throw py::value_error("this model's encoder takes float inputs (encode_features), not token ids");
  }

  // inputs float32 [B,S,d_model] -> memory [B,S,d_model] (a model with src_vocab_size 0).
  py::array_t<float> encode_features(py::handle inputs_obj, py::handle lengths_obj) const {
    const auto& c = model_->config();
    if (!model_->takes_features())
      throw py::value_error("this model's encoder takes token ids (encode), not float inputs");
    FloatArray x = float_array(inputs_obj, "encode_features", "inputs", 3);
    const int64_t B = x.shape(0), S = x.shape(1);
    check_shape(x, "encode_features", "inputs", {-1, -1, c.d_model}, "[B, S, " + std::to_string(c.d_model) + "]");
    return run_encoder("encode_features", B, S, lengths_obj, [&](const int32_t* lengths, float* memory) {
      model_->encode_features(x.data(), B, S, lengths, memory);
    });
  }

  // memory [B,S,d_model] = run(lengths or null, memory), without the GIL.
  template <typename Run>
  py::array_t<float> run_encoder(const char* fn, int64_t B, int64_t S, py::handle lengths_obj, Run run) const {
    const auto& c = model_->config();
    auto lengths = lengths_array(lengths_obj, B, S);
    check_output_size(fn, "the feed-forward workspace", {B, S, c.dim_feedforward});
    py::array_t<float> memory = new_float_array({B, S, c.d_model});
    {
      SigintScope watch;
      py::gil_scoped_release release;
      run(lengths ? lengths->data() : nullptr, memory.mutable_data());
    }
    return memory;
  }

  // generate from a memory already computed: memory float32 [B,S,d_model].
  py::list generate_from_memory(py::handle memory_obj, py::handle lengths_obj, py::handle start_obj,
                                const model::GenerationOptions& g) const {
    const auto& c = model_->config();
    FloatArray memory = float_array(memory_obj, "generate", "memory", 3);
    const int64_t B = memory.shape(0), S = memory.shape(1);
    check_shape(memory, "generate", "memory", {-1, -1, c.d_model}, "[B, S, " + std::to_string(c.d_model) + "]");
    auto lengths = lengths_array(lengths_obj, B, S);
    const auto start = prefixes(start_obj, B);
    std::vector<std::vector<model::Hypothesis>> results;
    {
      SigintScope watch;
      py::gil_scoped_release release;
      results = model::generate_from_memory(*model_, memory.data(), B, S, lengths ? lengths->data() : nullptr, start, g);
    }
    return hypotheses_list(results);
  }

  static py::list hypotheses_list(const std::vector<std::vector<model::Hypothesis>>& results) {
    py::list out;
    for (const auto& hyps : results) {
      py::list row;
      for (const auto& h : hyps) row.append(py::make_tuple(py::cast(h.tokens), h.score, h.log_prob, h.probe));
      out.append(row);
    }
    return out;
  }

  std::vector<std::vector<int32_t>> prefixes(py::handle obj, int64_t B) const {
    std::vector<std::vector<int32_t>> out;
    if (obj.is_none()) return out;
    const auto& c = model_->config();
    for (py::handle row : obj) {
      std::vector<int32_t> p;
      for (py::handle t : row) {
        if (py::isinstance<py::bool_>(t) || !py::isinstance<py::int_>(t))
          throw py::type_error("start_tokens must hold ints");
        const auto v = option_value(t, "start_tokens", 0, c.tgt_vocab_size - 1);
        p.push_back(static_cast<int32_t>(v));
      }
      out.push_back(std::move(p));
    }
    if (static_cast<int64_t>(out.size()) != B) throw py::value_error("start_tokens must have one list per source");
    return out;
  }

  // [[(tokens, score, log_prob), ...] per source]
  py::list generate(py::handle ids_obj, py::handle lengths_obj, py::handle start_obj,
                    const model::GenerationOptions& g) const {
    const auto& c = model_->config();
    check_takes_ids();
    IntArray ids = int_array(ids_obj, "src_ids", 2);
    const int64_t B = ids.shape(0), S = ids.shape(1);
    if (S > c.max_length) throw py::value_error("source length exceeds max_length");
    check_ids(ids, c.src_vocab_size, "src_ids");
    auto lengths = lengths_array(lengths_obj, B, S);
    const auto start = prefixes(start_obj, B);
    std::vector<std::vector<model::Hypothesis>> results;
    {
      SigintScope watch;
    py::gil_scoped_release release;
      results = model::generate(*model_, ids.data(), B, S, lengths ? lengths->data() : nullptr, start, g);
    }
    return hypotheses_list(results);
  }

  std::unique_ptr<model::TokenStream> stream(py::handle ids_obj, py::handle start_obj,
                                             const model::GenerationOptions& g) const {
    const auto& c = model_->config();
    check_takes_ids();
    IntArray ids = int_array(ids_obj, "src_ids", 2);
    if (ids.shape(0) != 1) throw py::value_error("generate_tokens takes one source");
    const int64_t S = ids.shape(1);
    if (S > c.max_length) throw py::value_error("source length exceeds max_length");
    check_ids(ids, c.src_vocab_size, "src_ids");
    const auto start = prefixes(start_obj, 1);
    SigintScope watch;
    py::gil_scoped_release release;
    return std::make_unique<model::TokenStream>(*model_, ids.data(), S, start.empty() ? std::vector<int32_t>{} : start[0],
                                                g);
  }

  py::dict state_dict(bool int8) const {
    py::dict out;
    model_->export_weights(dict_sinks(out, int8));
    return out;
  }
  const char* compute_type() const { return compute_type_name(model_->config().compute); }

  py::array_t<float> encode(py::handle ids_obj, py::handle lengths_obj) const {
    const auto& c = model_->config();
    check_takes_ids();
    IntArray ids = int_array(ids_obj, "src_ids", 2);
    const int64_t B = ids.shape(0), S = ids.shape(1);
    if (S > c.max_length) throw py::value_error("source length exceeds max_length");
    check_ids(ids, c.src_vocab_size, "src_ids");
    return run_encoder("encode", B, S, lengths_obj, [&](const int32_t* lengths, float* memory) {
      model_->encode(ids.data(), B, S, lengths, memory);
    });
  }

  py::object decode(py::handle ids_obj, py::handle memory_obj, py::handle lengths_obj, bool return_attention) const {
    const auto& c = model_->config();
    IntArray ids = int_array(ids_obj, "tgt_ids", 2);
    const int64_t B = ids.shape(0), T = ids.shape(1);
    if (T > c.max_length) throw py::value_error("target length exceeds max_length");
    check_ids(ids, c.tgt_vocab_size, "tgt_ids");
    FloatArray memory = float_array(memory_obj, "decode", "memory", 3);
    const int64_t S = memory.shape(1);
    check_shape(memory, "decode", "memory", {B, -1, c.d_model},
                "[" + std::to_string(B) + ", S, " + std::to_string(c.d_model) + "]");
    auto lengths = lengths_array(lengths_obj, B, S);
    check_output_size("decode", "the logits", {B, T, c.tgt_vocab_size});
    check_output_size("decode", "the feed-forward workspace", {B, std::max(T, S), c.dim_feedforward});
    check_output_size("decode", "the attention", {return_attention ? B : 0, T, S});
    py::array_t<float> logits = new_float_array({B, T, c.tgt_vocab_size});
    py::array_t<float> attention = new_float_array({return_attention ? B : 0, T, S});
    {
      SigintScope watch;
    py::gil_scoped_release release;
      model_->decode(ids.data(), B, T, memory.data(), S, lengths ? lengths->data() : nullptr, logits.mutable_data(),
                     return_attention ? attention.mutable_data() : nullptr);
    }
    if (return_attention) return py::make_tuple(logits, attention);
    return std::move(logits);
  }

 private:
  std::unique_ptr<model::Transformer> model_;
};

// An encoder-only model (BERT-style): the Transformer's encoder, alone.
class PyEncoderModel {
 public:
  PyEncoderModel(const py::dict& config, const py::dict& weights, const std::string& compute_type)
      : cfg_(config_from_dict(config)) {
    if (cfg_.src_vocab_size < 1) throw py::value_error("an encoder-only model needs src_vocab_size >= 1");
    cfg_.compute = compute_type_arg(compute_type);
    WeightKeep keep;
    const model::WeightMap map = weight_map(weights, "EncoderModel", &keep);
    model::check_weights(map, model::weight_table(cfg_, true));
    SigintScope watch;
    py::gil_scoped_release release;
    encoder_ = std::make_unique<model::Encoder>(kernels::active(), cfg_, map);
  }

  py::array_t<float> encode(py::handle ids_obj, py::handle lengths_obj, py::handle types_obj) const {
    IntArray ids = int_array(ids_obj, "input_ids", 2);
    const int64_t B = ids.shape(0), S = ids.shape(1);
    if (S > cfg_.max_length) throw py::value_error("input length exceeds max_length");
    check_ids(ids, cfg_.src_vocab_size, "input_ids");
    auto lengths = lengths_array(lengths_obj, B, S);
    std::optional<IntArray> types;
    if (!types_obj.is_none()) {
      types = int_array(types_obj, "token_type_ids", 2);
      if (types->shape(0) != B || types->shape(1) != S)
        throw py::value_error("token_type_ids must have the shape of input_ids");
      check_ids(*types, std::max<int64_t>(cfg_.type_vocab_size, 1), "token_type_ids");
    }
    check_output_size("encode", "the feed-forward workspace", {B, S, cfg_.dim_feedforward});
    py::array_t<float> out = new_float_array({B, S, cfg_.d_model});
    {
      SigintScope watch;
    py::gil_scoped_release release;
      encoder_->encode(ids.data(), types ? types->data() : nullptr, B, S, lengths ? lengths->data() : nullptr,
                       out.mutable_data());
    }
    return out;
  }

  py::dict state_dict(bool int8) const {
    py::dict out;
    encoder_->export_weights(dict_sinks(out, int8));
    return out;
  }
  const char* compute_type() const { return compute_type_name(cfg_.compute); }

 private:
  model::TransformerConfig cfg_;
  std::unique_ptr<model::Encoder> encoder_;
};

}  // namespace

void bind_model(py::module_& m) {
  using namespace pybind11::literals;
  m.def(
      "_weight_table",
      [](const py::dict& config, bool encoder_only) {
        py::dict out;  // insertion-ordered: the table's order
        for (const auto& [name, shape] : model::weight_table(config_from_dict(config), encoder_only)) {
          py::tuple t(shape.size());
          for (size_t i = 0; i < shape.size(); ++i) t[i] = py::int_(shape[i]);
          out[py::str(name)] = t;
        }
        return out;
      },
      "config"_a, "encoder_only"_a = false,
      "Every weight a model with this config (a TransformerConfig._core_dict()) needs: name -> shape.");
  py::class_<model::GenerationOptions>(
      m, "GenerationOptions",
      "The options of one generate/stream call, every one given (their defaults live in "
      "pytransformer.Transformer.generate); immutable.")
      .def(py::init(&make_generation_options), py::kw_only(), "max_length"_a, "min_length"_a, "beam_size"_a,
           "length_penalty"_a, "num_hypotheses"_a, "sampling_topk"_a, "sampling_topp"_a, "sampling_temperature"_a,
           "seed"_a, "return_scores"_a, "suppress_tokens"_a, "forced_eos"_a, "forced_bos"_a, "early_stopping"_a,
           "begin_suppress_tokens"_a = py::tuple(), "decoder_start"_a = py::none(), "timestamp_begin"_a = py::none(),
           "no_timestamps"_a = py::none(), "max_initial_timestamp"_a = py::none(), "renormalize"_a = false,
           "probe_token"_a = py::none(), "probe_after"_a = py::none(), "ct2_beam"_a = false, "patience"_a = 1.0)
      .def_readonly("max_length", &model::GenerationOptions::max_length)
      .def_readonly("min_length", &model::GenerationOptions::min_length)
      .def_readonly("beam_size", &model::GenerationOptions::beam_size)
      .def_readonly("length_penalty", &model::GenerationOptions::length_penalty)
      .def_readonly("num_hypotheses", &model::GenerationOptions::num_hypotheses)
      .def_readonly("sampling_topk", &model::GenerationOptions::sampling_topk)
      .def_readonly("sampling_topp", &model::GenerationOptions::sampling_topp)
      .def_readonly("sampling_temperature", &model::GenerationOptions::sampling_temperature)
      .def_readonly("seed", &model::GenerationOptions::seed)
      .def_readonly("return_scores", &model::GenerationOptions::return_scores)
      .def_readonly("suppress_tokens", &model::GenerationOptions::suppress_tokens)
      .def_readonly("forced_eos", &model::GenerationOptions::forced_eos)
      .def_property_readonly("forced_bos",
                             [](const model::GenerationOptions& g) -> py::object {
                               if (g.forced_bos < 0) return py::none();
                               return py::int_(g.forced_bos);
                             })
      .def_readonly("early_stopping", &model::GenerationOptions::early_stopping)
      .def_readonly("begin_suppress_tokens", &model::GenerationOptions::begin_suppress_tokens);
  py::class_<model::TokenStream>(m, "TokenStream")
      .def("next", [](model::TokenStream& s) {
        SigintScope watch;
    py::gil_scoped_release release;
        return s.next();
      });
  py::class_<PyEncoderModel>(m, "EncoderOnlyModel", "The C++ encoder alone; use pytransformer.EncoderModel.")
      .def(py::init<const py::dict&, const py::dict&, const std::string&>(), "config"_a, "weights"_a,
           "compute_type"_a = "float32")
      .def("encode", &PyEncoderModel::encode, "input_ids"_a, "lengths"_a = py::none(), "token_type_ids"_a = py::none())
      .def("state_dict", &PyEncoderModel::state_dict, "int8"_a = false)
      .def_property_readonly("compute_type", &PyEncoderModel::compute_type);
  py::class_<PyTransformer>(m, "TransformerModel", "The C++ Transformer; use pytransformer.Transformer.")
      .def(py::init<const py::dict&, const py::dict&, const std::string&>(), "config"_a, "weights"_a,
           "compute_type"_a = "float32")
      .def("state_dict", &PyTransformer::state_dict, "int8"_a = false)
      .def_property_readonly("compute_type", &PyTransformer::compute_type)
      .def("generate", &PyTransformer::generate, "src_ids"_a, "src_lengths"_a, "start_tokens"_a, "options"_a)
      .def("stream", &PyTransformer::stream, "src_ids"_a, "start_tokens"_a, "options"_a, py::keep_alive<0, 1>())
      .def("encode", &PyTransformer::encode, "src_ids"_a, "src_lengths"_a = py::none())
      .def("encode_features", &PyTransformer::encode_features, "inputs"_a, "src_lengths"_a = py::none())
      .def("generate_from_memory", &PyTransformer::generate_from_memory, "memory"_a, "src_lengths"_a,
           "start_tokens"_a, "options"_a)
      .def("decode", &PyTransformer::decode, "tgt_ids"_a, "memory"_a, "src_lengths"_a = py::none(),
           "return_attention"_a = false);
}

}  // namespace pt::bindings
