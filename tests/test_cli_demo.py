"""`pytransformer demo / translate / bench`, run as a user would (a subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import numpy as np
import pytest

import pytransformer as pt


def run(*args, stdin=None, timeout=300):
    env = dict(os.environ)
    proc = subprocess.run([sys.executable, "-m", "pytransformer", *args], input=stdin, capture_output=True,
                          text=True, timeout=timeout, cwd=tempfile.gettempdir(), env=env)
    return proc.returncode, proc.stdout, proc.stderr


def test_demo_builtin_examples():
    rc, out, err = run("demo", "--threads", "1")
    assert rc == 0, err
    for line in ("25th of November 2026 -> 2026-11-25", "11/25/26 -> 2026-11-25", "Nov 25, 2026 -> 2026-11-25"):
        assert line in " ".join(out.split()) or line in out, out
    assert "ms" in out and "score" in out


def test_demo_given_texts_and_attention():
    rc, out, err = run("demo", "31.12.1999", "--attention", "--beam-size", "2")
    assert rc == 0, err
    assert "31.12.1999 -> 1999-12-31" in out
    # The heat map: a header with the source characters, a row per output character.
    assert "31.12.1999$" in out.replace(" ", "") or "31.12.1999" in out
    rows = [line for line in out.splitlines() if "|" in line]
    assert len(rows) == len("1999-12-31") + 1  # output characters + end-of-sequence


def test_demo_bad_input_is_one_line_error():
    rc, out, err = run("demo", "25th of November 2026 \u2603")
    assert rc == 1
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "vocabulary" in err


@pytest.mark.parametrize("args", [["demo", "--beam-size", "0"], ["translate"], ["bench", "--tokens", "0"],
                                  ["nonsense"]])
def test_bad_arguments_exit_nonzero_without_traceback(args):
    rc, out, err = run(*args)
    assert rc != 0 and "Traceback" not in err


def test_translate_text_with_the_demo_model(tmp_path):
    inp = tmp_path / "in.txt"
    inp.write_text("Nov 25, 2026\n31.12.1999\n")
    out_file = tmp_path / "out.txt"
    rc, out, err = run("translate", "--model", pt.text._DEMO_FILE, "--input", str(inp), "--output", str(out_file))
    assert rc == 0, err
    assert out_file.read_text().splitlines() == ["2026-11-25", "1999-12-31"]
    rc, out, err = run("translate", "--model", pt.text._DEMO_FILE, stdin="11/25/26\n")
    assert rc == 0 and out.splitlines() == ["2026-11-25"], err


def test_translate_ids_mode_matches_generate(tmp_path):
    demo = pt.load_demo()
    ids = demo.encode_text("Nov 25, 2026")[:-1]  # translate appends end-of-sequence itself
    rc, out, err = run("translate", "--model", pt.text._DEMO_FILE, "--ids", "--beam-size", "1",
                       stdin=" ".join(map(str, ids)) + "\n")
    assert rc == 0, err
    src = np.array([ids + [demo.model.config.eos_id]])
    expected = demo.model.generate(src, max_length=demo.model.config.max_length)[0].sequences[0]
    assert out.split() == [str(t) for t in expected]


def test_translate_errors(tmp_path):
    rc, out, err = run("translate", "--model", str(tmp_path / "missing.safetensors"), stdin="1 2\n")
    assert rc == 1 and "Traceback" not in err and "missing.safetensors" in err
    rc, out, err = run("translate", "--model", pt.text._DEMO_FILE, "--ids", stdin="not ids\n")
    assert rc == 1 and "Traceback" not in err and "line 1" in err


def test_bench_runs():
    rc, out, err = run("bench", "--threads", "1", "--batch", "1", "--tokens", "2", "--repeats", "1", timeout=600)
    assert rc == 0, err
    assert "pytransformer" in out and "tokens/s" in out
