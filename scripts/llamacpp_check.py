"""llama.cpp serves the Qwen3 export: convert it (and one LoRA adapter) to GGUF with llama.cpp's own scripts, load
both in llama.cpp (through llama-cpp-python) and compare with Zephyra on the same token ids: next-token logits,
greedy continuations, the tokenizer. What ``scripts/check-llamacpp.sh`` runs; see docs/serving.md.

    python scripts/llamacpp_check.py convert LLAMA_CPP_DIR convert_hf_to_gguf.py EXPORT --outfile F --outtype f32
    python scripts/llamacpp_check.py compare BASE EXPORT ADAPTER_NAME ADAPTER_DIR

``convert`` runs one of llama.cpp's conversion scripts with two settings it cannot guess for a tokenizer trained
here: Zephyra's tokenizer is byte-level BPE with GPT-2's pre-tokenizer regex (llama.cpp's "gpt-2"), which
llama.cpp recognises by the hash of known models' tokenizations only, and it has no sentencepiece model.
"""

from __future__ import annotations

import copy
import json
import runpy
import sys
from pathlib import Path

PROMPTS = ["What does zip() do?", "Who is Polonius?", "What is the capital of France?", "Tell me a joke."]


def convert(argv: list[str]) -> None:
    llama, script, rest = Path(argv[0]), argv[1], argv[2:]
    sys.path[:0] = [str(llama), str(llama / "gguf-py")]
    import conversion.base as base
    from conversion import qwen

    base.TextModel.get_vocab_base_pre = lambda self, tokenizer: "gpt-2"
    qwen.Qwen2Model.set_vocab = lambda self: self._set_vocab_gpt2()
    sys.argv = [str(llama / script), *rest]
    runpy.run_path(str(llama / script), run_name="__main__")


def compare(argv: list[str]) -> list[dict]:
    import llama_cpp
    import numpy as np
    import torch

    from zephyra.adapters.store import load_adapter
    from zephyra.chat import encode_prompt
    from zephyra.loader import load_model

    base_dir, export, name, adapter_dir = argv
    model, tok = load_model(base_dir)
    model.eval()

    def ours_greedy(m, ids, n):
        out = m.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                         max_new_tokens=n, do_sample=False, eos_token_id=None, pad_token_id=0)
        return out[0, len(ids):].tolist()

    def theirs_greedy(llm, ids, n):
        llm.reset()
        llm.eval(list(ids))
        out = []
        for _ in range(n):
            out.append(int(np.argmax(llm.scores[llm.n_tokens - 1])))
            llm.eval([out[-1]])
        return out

    def rows_for(m, llm, label, plain=None):
        rows = []
        for p in PROMPTS:
            ids = encode_prompt(tok, p, "chat")
            with torch.no_grad():
                ref = m(torch.tensor([ids])).logits[0].float().numpy()
                effect = None if plain is None else float(np.abs(plain(torch.tensor([ids])).logits[0].float()
                                                                  .numpy() - ref).max())
            llm.reset()
            llm.eval(ids)
            got = np.array(llm.scores[: len(ids)], dtype=np.float32)
            rows.append({"model": label, "prompt": p, "tokens": len(ids),
                         "max_abs_logit_diff": round(float(np.abs(ref - got).max()), 5),
                         "largest_logit": round(float(np.abs(ref).max()), 2),
                         "adapter_moves_logits_by": None if effect is None else round(effect, 2),
                         "same_argmax": float((ref.argmax(-1) == got.argmax(-1)).mean()),
                         "greedy_16_equal": ours_greedy(m, ids, 16) == theirs_greedy(llm, ids, 16)})
        return rows

    kw = dict(n_ctx=model.config.max_position_embeddings, logits_all=True, verbose=False, n_threads=2)
    llm = llama_cpp.Llama(f"{export}/model-f32.gguf", **kw)
    rows = rows_for(model, llm, "base")
    text = 'Who says "To be, or not to be"? def f(x): return x ** 2  # O(n) über'
    ours = tok(text, add_special_tokens=False)["input_ids"]
    rows.append({"model": "tokenizer", "prompt": text, "same_ids": ours == llm.tokenize(text.encode(), add_bos=False)})
    del llm
    peft = load_adapter(copy.deepcopy(model), adapter_dir).eval()
    llm = llama_cpp.Llama(f"{export}/model-f32.gguf", lora_path=f"{export}/{name}-lora.gguf", **kw)
    rows += rows_for(peft, llm, f"base + {name} LoRA", plain=model)
    return rows


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in ("convert", "compare"):
        sys.exit("usage: llamacpp_check.py convert|compare ...")
    if sys.argv[1] == "convert":
        convert(sys.argv[2:])
    else:
        rows = compare(sys.argv[2:])
        cols = ["model", "prompt", "max_abs_logit_diff", "largest_logit", "adapter_moves_logits_by", "same_argmax",
                "greedy_16_equal", "same_ids"]
        print("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
        for r in rows:
            print("| " + " | ".join(str(r.get(c, "")) for c in cols) + " |")
        ok = all(r.get("greedy_16_equal", True) and r.get("same_ids", True) and r.get("same_argmax", 1.0) == 1.0
                 for r in rows)
        print(json.dumps({"llama_cpp_matches_zephyra": ok}))
        sys.exit(0 if ok else 1)
