"""`record --lid-filter`: sentences identified as another language are dropped, counted and recorded."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from test_distributed import make_inputs, run_env

from langneurons.data import Corpus
from langneurons.data.lid_filter import lid_filter
from langneurons.errors import LangneuronsError
from langneurons.evaluation.langid import identify_language, to_label

EN = ["The weather is lovely today, so we are going for a long walk in the park.",
      "Le gouvernement a annoncé de nouvelles mesures pour soutenir les agriculteurs.",  # French
      "The committee will publish its final report at the end of next month.",
      "12:30 - 14:45",  # nothing to identify: kept
      "Die Regierung hat heute neue Maßnahmen zur Unterstützung der Landwirte angekündigt."]  # German
FR = ["Le chat dort sur le canapé pendant que la pluie tombe dehors.",
      "Nous avons visité le musée et acheté quelques souvenirs pour la famille.",
      "The shares of the company rose sharply after the announcement on Monday."]  # English  # fmt: skip


def corpus(**langs) -> Corpus:
    return Corpus("t", {lang: [(str(i), t) for i, t in enumerate(texts)] for lang, texts in langs.items()})


def test_real_identifier_drops_other_languages_only():
    filtered, report = lid_filter(corpus(en=EN, fr=FR), identify_language, to_label, 0.5, "lite")
    assert filtered.ids("en") == ["0", "2", "3"] and filtered.ids("fr") == ["0", "1"]  # ids keep their gaps
    assert report["dropped"] == {"en": 2, "fr": 1} and report["kept"] == {"en": 3, "fr": 2}
    assert report["dropped_as"]["en"] == {"fr": 1, "de": 1} and report["dropped_as"]["fr"] == {"en": 1}
    assert filtered.filters == [report]


def test_threshold_and_refusals():
    fake = {"a": ("xx", 0.4), "b": ("xx", 0.6), "c": ("en", 0.99)}
    filtered, report = lid_filter(corpus(en=["a", "b", "c"]), fake.__getitem__, str, threshold=0.5)
    assert filtered.texts("en") == ["a", "c"] and report["dropped"] == {"en": 1}
    with pytest.raises(LangneuronsError, match="every zz sentence"):
        lid_filter(corpus(zz=["a", "b"]), lambda t: ("en", 0.9), str)
    with pytest.raises(LangneuronsError, match="lid-threshold"):
        lid_filter(corpus(en=["a"]), fake.__getitem__, str, threshold=1.5)


def test_cli_records_the_dropped_counts(tmp_path):
    model, _ = make_inputs(tmp_path)
    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "en.txt").write_text("\n".join(EN) + "\n")
    (tmp_path / "texts" / "fr.txt").write_text("\n".join(FR) + "\n")
    cmd = [sys.executable, "-m", "langneurons", "record", "--model", model, "--corpus", str(tmp_path / "texts"),
           "--max-length", "32", "--lid-filter", "--out", str(tmp_path / "run")]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, env=run_env(), timeout=300)
    assert res.returncode == 0, res.stderr
    assert "dropped: en 2/5, fr 1/3" in " ".join(res.stderr.split())
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["sentences"] == {"en": 3, "fr": 2}
    (lid,) = manifest["filters"]
    assert lid["dropped"] == {"en": 2, "fr": 1} and lid["threshold"] == 0.5
    plain = subprocess.run(cmd[:-3] + ["--out", str(tmp_path / "plain")], capture_output=True, text=True,
                           env=run_env(), timeout=300)  # fmt: skip
    assert plain.returncode == 0 and "filters" not in json.loads((tmp_path / "plain" / "manifest.json").read_text())
