#!/usr/bin/env python3
"""Render every (chat template, conversation, add_generation_prompt) with
Python's jinja2 the way transformers does, and write the results as the
expected outputs of tests/unit/test_jinja.c.

    QD_SHARED=/path/to/shared python3 scripts/gen_chat_expected.py

Templates are read in place from $QD_SHARED (chat_templates/*.jinja and the
chat_template of tokenizers/*/tokenizer_config.json); conversations are
tests/data/chat/conv/*.json (a JSON object of template variables, at least
`messages`). Writes tests/data/chat/templates.json (id, path, bos, eos) and
tests/data/chat/expected/<template>__<conv>__agp<0|1>.txt, or .err when
jinja2 raises (first line "raise: MSG" for raise_exception, else
"error: TYPE: MSG").

The environment mirrors transformers' chat template rendering:
ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
extensions=[loopcontrols]), tojson = json.dumps(ensure_ascii=False, ...),
raise_exception and strftime_now — pinned here to 2026-11-28 12:00 UTC so
outputs do not depend on the date (the C test pins the same instant).
"""
import datetime
import glob
import json
import os
import sys

from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "tests", "data", "chat")
PINNED_NOW = datetime.datetime(2026, 11, 28, 12, 0, 0)

# (id, path under $QD_SHARED, bos, eos); None bos/eos: take them from the
# tokenizer_config.json the template comes from.
TEMPLATES = [
    ("qwen2_5", "chat_templates/Qwen-Qwen2.5-7B-Instruct.jinja", "", "<|im_end|>"),
    ("llama3_1_8b", "chat_templates/meta-llama-Llama-3.1-8B-Instruct.jinja",
     "<|begin_of_text|>", "<|eot_id|>"),
    ("llama3_2_3b", "chat_templates/meta-llama-Llama-3.2-3B-Instruct.jinja",
     "<|begin_of_text|>", "<|eot_id|>"),
    ("mistral_nemo", "chat_templates/mistralai-Mistral-Nemo-Instruct-2407.jinja", "<s>", "</s>"),
    ("tok_llama3", "tokenizers/llama3/tokenizer_config.json", None, None),
    ("tok_llama3_1", "tokenizers/llama3_1/tokenizer_config.json", None, None),
    ("tok_qwen3", "tokenizers/qwen3/tokenizer_config.json", None, None),
    ("tok_gemma3", "tokenizers/gemma3/tokenizer_config.json", None, None),
]


class RaisedError(TemplateError):
    pass


def raise_exception(message):
    raise RaisedError(message)


def strftime_now(fmt):
    return PINNED_NOW.strftime(fmt)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent,
                      separators=separators, sort_keys=sort_keys)


def make_env():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def token_text(tok):
    if isinstance(tok, dict):
        return tok.get("content", "")
    return tok or ""


def load_template(shared, path):
    """Return (template text, bos, eos from the config or None)."""
    full = os.path.join(shared, path)
    if path.endswith(".json"):
        with open(full, encoding="utf-8") as f:
            cfg = json.load(f)
        tmpl = cfg["chat_template"]
        if isinstance(tmpl, list):  # named templates: take "default"
            tmpl = next(t["template"] for t in tmpl if t["name"] == "default")
        return tmpl, token_text(cfg.get("bos_token")), token_text(cfg.get("eos_token"))
    with open(full, encoding="utf-8") as f:
        return f.read(), None, None


def main():
    shared = os.environ.get("QD_SHARED", os.path.join(ROOT, "..", "shared"))
    env = make_env()
    convs = sorted(glob.glob(os.path.join(DATA, "conv", "*.json")))
    out_dir = os.path.join(DATA, "expected")
    os.makedirs(out_dir, exist_ok=True)
    for old in glob.glob(os.path.join(out_dir, "*")):
        os.remove(old)
    manifest = []
    n_ok = n_err = 0
    for tid, path, bos, eos in TEMPLATES:
        text, cfg_bos, cfg_eos = load_template(shared, path)
        bos = cfg_bos if bos is None else bos
        eos = cfg_eos if eos is None else eos
        manifest.append({"id": tid, "path": path, "bos_token": bos, "eos_token": eos})
        tmpl = env.from_string(text)
        for conv_path in convs:
            cid = os.path.splitext(os.path.basename(conv_path))[0]
            with open(conv_path, encoding="utf-8") as f:
                conv = json.load(f)
            for agp in (0, 1):
                variables = dict(conv)
                variables.update(add_generation_prompt=bool(agp), bos_token=bos, eos_token=eos)
                base = os.path.join(out_dir, f"{tid}__{cid}__agp{agp}")
                try:
                    text_out = tmpl.render(**variables)
                except RaisedError as e:
                    with open(base + ".err", "w", encoding="utf-8") as f:
                        f.write(f"raise: {e.message}\n")
                    n_err += 1
                    continue
                except Exception as e:  # noqa: BLE001 - any jinja2 failure is data
                    with open(base + ".err", "w", encoding="utf-8") as f:
                        f.write(f"error: {type(e).__name__}: {e}\n")
                    n_err += 1
                    continue
                with open(base + ".txt", "w", encoding="utf-8", newline="") as f:
                    f.write(text_out)
                n_ok += 1
    with open(os.path.join(DATA, "templates.json"), "w", encoding="utf-8") as f:
        json.dump({"templates": manifest,
                   "conversations": [os.path.splitext(os.path.basename(p))[0] for p in convs]},
                  f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"{n_ok} outputs, {n_err} expected errors", file=sys.stderr)


if __name__ == "__main__":
    main()
