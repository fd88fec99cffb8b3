"""The Qwen3 export: transformers' own Qwen3ForCausalLM loads the exported base with logits equal to Zephyra's, and
PEFT loads each exported adapter onto it with logits equal to the Zephyra adapter's."""

import copy
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "router"))
from router_helpers import make_model, make_tokenizer  # noqa: E402

from zephyra.adapters import attach_adapter, load_adapter, save_adapter  # noqa: E402
from zephyra.errors import ArtifactError, ConfigError  # noqa: E402
from zephyra.export.qwen3 import export_qwen3  # noqa: E402


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    tok = make_tokenizer()
    model = make_model(tok, separable=False, initializer_range=0.2, num_key_value_heads=1)
    model.save_pretrained(root / "base")
    tok.save_pretrained(root / "base")
    torch.manual_seed(3)
    peft = attach_adapter(copy.deepcopy(model), "lora", name="python", identity_init=False)
    save_adapter(peft, root / "adapters" / "python")
    out = export_qwen3(root / "base", root / "qwen3", {"python": root / "adapters" / "python"})
    return root, model, out


def _ids(n=12, batch=2):
    g = torch.Generator().manual_seed(0)
    return torch.randint(3, 200, (batch, n), generator=g)


def test_transformers_qwen3_gives_zephyras_logits(exported):
    from transformers import Qwen3ForCausalLM

    _, model, out = exported
    qwen = Qwen3ForCausalLM.from_pretrained(out).eval()
    assert qwen.config.model_type == "qwen3" and qwen.config.num_key_value_heads == 1
    ids = _ids()
    with torch.no_grad():
        want, got = model(input_ids=ids).logits, qwen(input_ids=ids).logits
    assert want.abs().max() > 0.1  # a model that says something
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_peft_loads_the_exported_adapter_onto_qwen3_with_the_same_logits(exported):
    from peft import PeftModel
    from transformers import Qwen3ForCausalLM

    root, model, out = exported
    zephyra = load_adapter(copy.deepcopy(model), root / "adapters" / "python").eval()
    qwen = PeftModel.from_pretrained(Qwen3ForCausalLM.from_pretrained(out), out / "adapters" / "python").eval()
    ids = _ids()
    with torch.no_grad():
        base = model(input_ids=ids).logits
        want, got = zephyra(input_ids=ids).logits, qwen(input_ids=ids).logits
    assert (want - base).abs().max() > 1e-3  # the adapter changes the answer
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    targets = set(qwen.peft_config["default"].target_modules)
    assert targets <= {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


def test_what_has_no_qwen3_form_is_refused_in_one_line(exported, tmp_path):
    root, _, _ = exported
    tok = make_tokenizer()
    relu = make_model(tok, separable=False, hidden_act="relu2")
    relu.save_pretrained(tmp_path / "relu")
    tok.save_pretrained(tmp_path / "relu")
    with pytest.raises(ConfigError, match="SwiGLU only"):
        export_qwen3(tmp_path / "relu", tmp_path / "out")
    other = make_model(tok, seed=5, separable=False, initializer_range=0.2, num_key_value_heads=1)
    other.save_pretrained(tmp_path / "other")
    tok.save_pretrained(tmp_path / "other")
    with pytest.raises(ArtifactError, match="another base"):
        export_qwen3(tmp_path / "other", tmp_path / "out", {"python": root / "adapters" / "python"})
    assert not (tmp_path / "out").exists()
