// pytransformer._core.TransformerModel: the C++ model behind pytransformer.Transformer.
// The Python class validates and converts arguments with friendly messages; the
// checks repeated here only keep direct callers of _core from reading out of bounds.
#include <pybind11/stl.h>

#include <memory>
#include <string>

#include "bindings/arrays.h"
#include "model/search.h"
#include "model/transformer.h"

namespace pt::bindings {

namespace {

using IntArray = py::array_t<int32_t, py::array::c_style | py::array::forcecast>;

template <class T>
T get(const py::dict& d, const char* key) {
  if (!d.contains(key)) throw py::value_error(std::string("config is missing '") + key + "'");
  return d[key].cast<T>();
}

model::TransformerConfig config_from_dict(const py::dict& d) {
  model::TransformerConfig c;
  c.d_model = get<int64_t>(d, "d_model");
  c.nhead = get<int64_t>(d, "nhead");
  c.num_encoder_layers = get<int64_t>(d, "num_encoder_layers");
  c.num_decoder_layers = get<int64_t>(d, "num_decoder_layers");
  c.dim_feedforward = get<int64_t>(d, "dim_feedforward");
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
  c.layer_norm_eps = get<float>(d, "layer_norm_eps");
  c.final_norm = get<bool>(d, "final_norm");
  c.embedding_scale = get<float>(d, "embedding_scale");
  c.src_vocab_size = get<int64_t>(d, "src_vocab_size");
  c.tgt_vocab_size = get<int64_t>(d, "tgt_vocab_size");
  c.share_embeddings = get<bool>(d, "share_embeddings");
  c.tie_output = get<bool>(d, "tie_output");
  c.output_bias = get<bool>(d, "output_bias");
  c.max_length = get<int64_t>(d, "max_length");
  const auto pos = get<std::string>(d, "positional");
  if (pos == "sinusoidal")
    c.positional = model::Positional::kSinusoidal;
  else if (pos == "sinusoidal_concat")
    c.positional = model::Positional::kSinusoidalConcat;
  else if (pos == "learned")
    c.positional = model::Positional::kLearned;
  else
    throw py::value_error("unsupported positional '" + pos + "'");
  c.type_vocab_size = get<int64_t>(d, "type_vocab_size");
  c.embedding_norm = get<bool>(d, "embedding_norm");
  c.pad_id = get<int64_t>(d, "pad_id");
  c.bos_id = get<int64_t>(d, "bos_id");
  c.eos_id = get<int64_t>(d, "eos_id");
  if (c.d_model < 1 || c.nhead < 1 || c.d_model % c.nhead || c.dim_feedforward < 1 || c.num_encoder_layers < 0 ||
      c.num_decoder_layers < 0 || c.src_vocab_size < 1 || c.tgt_vocab_size < 1 || c.max_length < 1)
    throw py::value_error("invalid model sizes in config");
  if (c.share_embeddings && c.src_vocab_size != c.tgt_vocab_size)
    throw py::value_error("share_embeddings needs src_vocab_size == tgt_vocab_size");
  return c;
}

IntArray int_array(py::handle obj, const char* name, int ndim) {
  auto a = IntArray::ensure(obj);
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
model::WeightMap weight_map(const py::dict& weights, const char* fn, std::vector<FloatArray>* keep) {
  model::WeightMap map;
  keep->reserve(weights.size());
  for (auto item : weights) {
    const std::string name = item.first.cast<std::string>();
    keep->push_back(float_array(item.second, fn, name.c_str()));
    const FloatArray& a = keep->back();
    map[name] = model::WeightView{a.data(), std::vector<int64_t>(a.shape(), a.shape() + a.ndim())};
  }
  return map;
}

class PyTransformer {
 public:
  PyTransformer(const py::dict& config, const py::dict& weights) {
    const model::TransformerConfig cfg = config_from_dict(config);
    std::vector<FloatArray> keep;
    const model::WeightMap map = weight_map(weights, "Transformer", &keep);
    py::gil_scoped_release release;
    model_ = std::make_unique<model::Transformer>(cfg, map);
  }

  model::GenerationOptions options(const py::dict& o) const {
    model::GenerationOptions g;
    g.max_length = o["max_length"].cast<int64_t>();
    g.min_length = o["min_length"].cast<int64_t>();
    g.beam_size = o["beam_size"].cast<int64_t>();
    g.length_penalty = o["length_penalty"].cast<float>();
    g.num_hypotheses = o["num_hypotheses"].cast<int64_t>();
    g.sampling_topk = o["sampling_topk"].cast<int64_t>();
    g.sampling_topp = o["sampling_topp"].cast<double>();
    g.sampling_temperature = o["sampling_temperature"].cast<double>();
    g.seed = o["seed"].cast<uint64_t>();
    g.return_scores = o["return_scores"].cast<bool>();
    g.suppress_tokens = o["suppress_tokens"].cast<std::vector<int32_t>>();
    g.forced_eos = o["forced_eos"].cast<bool>();
    return g;
  }

  std::vector<std::vector<int32_t>> prefixes(py::handle obj, int64_t B) const {
    std::vector<std::vector<int32_t>> out;
    if (obj.is_none()) return out;
    const auto& c = model_->config();
    for (py::handle row : obj) {
      std::vector<int32_t> p;
      for (py::handle t : row) {
        const auto v = t.cast<int64_t>();
        if (v < 0 || v >= c.tgt_vocab_size) throw py::value_error("start_tokens contains an id outside the vocabulary");
        p.push_back(static_cast<int32_t>(v));
      }
      out.push_back(std::move(p));
    }
    if (static_cast<int64_t>(out.size()) != B) throw py::value_error("start_tokens must have one list per source");
    return out;
  }

  // [[(tokens, score, log_prob), ...] per source]
  py::list generate(py::handle ids_obj, py::handle lengths_obj, py::handle start_obj, const py::dict& opts) const {
    const auto& c = model_->config();
    IntArray ids = int_array(ids_obj, "src_ids", 2);
    const int64_t B = ids.shape(0), S = ids.shape(1);
    if (S > c.max_length) throw py::value_error("source length exceeds max_length");
    check_ids(ids, c.src_vocab_size, "src_ids");
    auto lengths = lengths_array(lengths_obj, B, S);
    const auto start = prefixes(start_obj, B);
    const model::GenerationOptions g = options(opts);
    std::vector<std::vector<model::Hypothesis>> results;
    {
      py::gil_scoped_release release;
      results = model::generate(*model_, ids.data(), B, S, lengths ? lengths->data() : nullptr, start, g);
    }
    py::list out;
    for (const auto& hyps : results) {
      py::list row;
      for (const auto& h : hyps) row.append(py::make_tuple(py::cast(h.tokens), h.score, h.log_prob));
      out.append(row);
    }
    return out;
  }

  std::unique_ptr<model::TokenStream> stream(py::handle ids_obj, py::handle start_obj, const py::dict& opts) const {
    const auto& c = model_->config();
    IntArray ids = int_array(ids_obj, "src_ids", 2);
    if (ids.shape(0) != 1) throw py::value_error("generate_tokens takes one source");
    const int64_t S = ids.shape(1);
    if (S > c.max_length) throw py::value_error("source length exceeds max_length");
    check_ids(ids, c.src_vocab_size, "src_ids");
    const auto start = prefixes(start_obj, 1);
    const model::GenerationOptions g = options(opts);
    py::gil_scoped_release release;
    return std::make_unique<model::TokenStream>(*model_, ids.data(), S, start.empty() ? std::vector<int32_t>{} : start[0],
                                                g);
  }

  py::dict state_dict() const {
    py::dict out;
    model_->export_weights([&](const std::string& name, const std::vector<int64_t>& shape) {
      py::array_t<float> a = new_float_array(shape);
      out[py::str(name)] = a;
      return a.mutable_data();
    });
    return out;
  }

  py::array_t<float> encode(py::handle ids_obj, py::handle lengths_obj) const {
    const auto& c = model_->config();
    IntArray ids = int_array(ids_obj, "src_ids", 2);
    const int64_t B = ids.shape(0), S = ids.shape(1);
    if (S > c.max_length) throw py::value_error("source length exceeds max_length");
    check_ids(ids, c.src_vocab_size, "src_ids");
    auto lengths = lengths_array(lengths_obj, B, S);
    py::array_t<float> memory = new_float_array({B, S, c.d_model});
    {
      py::gil_scoped_release release;
      model_->encode(ids.data(), B, S, lengths ? lengths->data() : nullptr, memory.mutable_data());
    }
    return memory;
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
    py::array_t<float> logits = new_float_array({B, T, c.tgt_vocab_size});
    py::array_t<float> attention = new_float_array({return_attention ? B : 0, T, S});
    {
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
  PyEncoderModel(const py::dict& config, const py::dict& weights) : cfg_(config_from_dict(config)) {
    std::vector<FloatArray> keep;
    const model::WeightMap map = weight_map(weights, "EncoderModel", &keep);
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
    py::array_t<float> out = new_float_array({B, S, cfg_.d_model});
    {
      py::gil_scoped_release release;
      encoder_->encode(ids.data(), types ? types->data() : nullptr, B, S, lengths ? lengths->data() : nullptr,
                       out.mutable_data());
    }
    return out;
  }

  py::dict state_dict() const {
    py::dict out;
    encoder_->export_weights([&](const std::string& name, const std::vector<int64_t>& shape) {
      py::array_t<float> a = new_float_array(shape);
      out[py::str(name)] = a;
      return a.mutable_data();
    });
    return out;
  }

 private:
  model::TransformerConfig cfg_;
  std::unique_ptr<model::Encoder> encoder_;
};

}  // namespace

void bind_model(py::module_& m) {
  using namespace pybind11::literals;
  py::class_<model::TokenStream>(m, "TokenStream")
      .def("next", [](model::TokenStream& s) {
        py::gil_scoped_release release;
        return s.next();
      });
  py::class_<PyEncoderModel>(m, "EncoderOnlyModel", "The C++ encoder alone; use pytransformer.EncoderModel.")
      .def(py::init<const py::dict&, const py::dict&>(), "config"_a, "weights"_a)
      .def("encode", &PyEncoderModel::encode, "input_ids"_a, "lengths"_a = py::none(), "token_type_ids"_a = py::none())
      .def("state_dict", &PyEncoderModel::state_dict);
  py::class_<PyTransformer>(m, "TransformerModel", "The C++ Transformer; use pytransformer.Transformer.")
      .def(py::init<const py::dict&, const py::dict&>(), "config"_a, "weights"_a)
      .def("state_dict", &PyTransformer::state_dict)
      .def("generate", &PyTransformer::generate, "src_ids"_a, "src_lengths"_a, "start_tokens"_a, "options"_a)
      .def("stream", &PyTransformer::stream, "src_ids"_a, "start_tokens"_a, "options"_a, py::keep_alive<0, 1>())
      .def("encode", &PyTransformer::encode, "src_ids"_a, "src_lengths"_a = py::none())
      .def("decode", &PyTransformer::decode, "tgt_ids"_a, "memory"_a, "src_lengths"_a = py::none(),
           "return_attention"_a = false);
}

}  // namespace pt::bindings
