"""The package's shape, checked: imports point one way with no circles, verbs are plain functions with real
signatures, no module reaches into another's private names, and the Python API takes a model the user
loaded and names its own arguments in errors."""

from __future__ import annotations

import ast
import inspect
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_record import GROUPS, corpus
from tiny import COMMON, CONFIGS, planted_model, tiny_model, word_tokenizer
from transformers import AutoConfig, AutoModelForCausalLM

import langneurons as ln
from langneurons.errors import LangneuronsError

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "langneurons"
VERBS = ("record", "identify", "intervene", "deactivate", "activate", "ppl", "steer", "similarity", "report",
         "load_model", "load_corpus", "load_stats", "load_neurons")  # fmt: skip


def test_import_contracts_hold():
    """import-linter's contracts in pyproject.toml: the layers import one way, identification and reporting
    load no model, and no package has an import circle."""
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    if exe is None:
        pytest.skip("import-linter is not installed (pip install -e '.[dev]')")
    proc = subprocess.run([exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "3 kept, 0 broken" in proc.stdout


@pytest.mark.parametrize("name", VERBS)
def test_verbs_are_plain_functions_with_real_signatures(name):
    verb = getattr(ln, name)
    assert inspect.isfunction(verb), type(verb)
    assert verb.__doc__ and verb.__doc__.strip(), name
    kinds = {p.kind for p in inspect.signature(verb).parameters.values()}
    assert inspect.Parameter.VAR_POSITIONAL not in kinds


def test_record_shows_its_parameters_and_a_subpackage_import_does_not_shadow_it():
    params = inspect.signature(ln.record).parameters
    assert list(params)[:3] == ["model", "corpus", "out"]
    assert {"site", "batch_size", "max_length", "settings", "progress"} <= set(params)
    import langneurons.recording  # noqa: F401  (a package import must not replace the verb)

    assert inspect.isfunction(ln.record) and ln.record.__module__ == "langneurons.api"


def test_no_module_imports_another_modules_private_names():
    offenders = []
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("langneurons"):
                offenders += [f"{path.relative_to(SRC)}: {a.name}" for a in node.names
                              if a.name.startswith("_") and not a.name.startswith("__")]  # fmt: skip
    assert not offenders, offenders


def test_api_errors_name_arguments_not_flags():
    loaded = planted_model(GROUPS)
    with pytest.raises(LangneuronsError) as err:
        ln.record(loaded, corpus(), batch_size=0, progress=False)
    assert "batch_size=" in str(err.value) and "--" not in str(err.value)


def test_results_and_sets_have_tidy_frames_and_mask_round_trips(tmp_path):
    loaded = planted_model(GROUPS)
    stats = ln.record(loaded, corpus(), progress=False, batch_size=2)
    ns = ln.identify(stats, "lape", top_rate=0.1, filter_rate=0.5)
    frame = ns.to_pandas()
    assert len(frame) == ns.n_pairs() and set(frame.columns) == {"language", "layer", "neuron", "class"}
    assert [tuple(map(int, p)) for p in ns.mask("aa").nonzero().tolist()] == ns.pairs("aa")
    back = ln.NeuronSet.from_mask({lang: ns.to_mask(lang) for lang in ns.languages})
    assert all(torch.equal(back.to_mask(lang), ns.to_mask(lang)) for lang in ns.languages)
    assert torch.equal(back.to_mask(), ns.to_mask())
    tidy = stats.to_pandas(layers=[1])
    assert len(tidy) == 2 * loaded.adapter.intermediate_size and set(tidy["layer"]) == {1}
    row = tidy[(tidy.language == "aa") & (tidy.neuron == 0)].iloc[0]
    assert row["count"] == int(stats.count[0, 1, 0])
    result = ln.ppl(loaded, ns, corpus(), batch_size=2, progress=False, controls=0)
    table = result.to_pandas()
    assert set(table["intervention"]) == {"none", "neurons"} and len(table) == 3 * 2
    assert result.deactivated("aa") == result["ppl"]["neurons:aa"]
    assert repr(result).startswith("Result(ppl: 3 interventions × 2 languages")


def test_load_model_takes_a_model_the_user_loaded():
    base = tiny_model("llama")
    loaded = ln.load_model(base.model, base.tokenizer)
    assert loaded.adapter.family == "llama" and loaded.model is base.model
    with pytest.raises(LangneuronsError, match="no language-model head.*not its decoder body"):
        ln.load_model(base.model.model, base.tokenizer)  # the body, as `model.model`
    with pytest.raises(LangneuronsError, match="pass it, load_model"):
        ln.load_model(base.model)  # an in-memory model has no folder to read a tokenizer from


def test_an_unknown_family_says_how_to_add_an_adapter_and_a_registered_one_works():
    config = AutoConfig.for_model("llama", **COMMON, **CONFIGS["llama"])
    model = AutoModelForCausalLM.from_config(config)
    model.config.model_type = "mystery"
    with pytest.raises(LangneuronsError, match="'mystery'.*register_adapter.*docs/adapters.md"):
        ln.load_model(model, word_tokenizer())

    class MysteryAdapter(ln.Adapter):
        model_types = ("mystery",)

    from langneurons.models import ADAPTERS

    ln.register_adapter(MysteryAdapter)
    try:
        loaded = ln.load_model(model, word_tokenizer())
        assert isinstance(loaded.adapter, MysteryAdapter) and loaded.adapter.num_layers == CONFIGS["llama"][
            "num_hidden_layers"]  # fmt: skip
    finally:
        ADAPTERS.remove(MysteryAdapter)


def test_a_peft_wrapped_model_records_what_its_base_records():
    peft = pytest.importorskip("peft")
    base = planted_model(GROUPS)
    plain = {site: ln.record(base, corpus(), progress=False, batch_size=2, site=site) for site in ("act", "down_in")}
    config = peft.LoraConfig(r=2, target_modules=["down_proj", "up_proj"], init_lora_weights=True)
    wrapped = peft.get_peft_model(base.model, config)  # LoRA's B starts at 0: the same function
    loaded = ln.load_model(wrapped, base.tokenizer)
    assert loaded.model is not wrapped  # the base model, its LoRA layers in place
    for site, want in plain.items():  # down_in is the input of the LoRA-wrapped down_proj
        again = ln.record(loaded, corpus(), progress=False, batch_size=2, site=site)
        assert torch.equal(again.count, want.count) and torch.allclose(again.sum, want.sum)
