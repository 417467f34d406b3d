"""Tiny random models of every supported family and a real byte-level tokenizer, built locally (no network)."""

from __future__ import annotations

import functools

import torch
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

import mechscope as ms

VOCAB = 260  # 256 byte tokens + bos/eos/pad/unk

_COMMON = dict(vocab_size=VOCAB, max_position_embeddings=64)
_IDS = dict(bos_token_id=256, eos_token_id=257, pad_token_id=258)
_LLAMA_SHAPE = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2, **_COMMON, **_IDS)

CONFIGS: dict[str, transformers.PretrainedConfig] = {
    "llama": transformers.LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                                      num_attention_heads=4, num_key_value_heads=2, **_COMMON),
    "mistral": transformers.MistralConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                          num_attention_heads=4, num_key_value_heads=2, **_COMMON),
    "qwen2": transformers.Qwen2Config(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, **_COMMON),
    "qwen3": transformers.Qwen3Config(hidden_size=32, intermediate_size=64, num_hidden_layers=2, head_dim=8,
                                      num_attention_heads=4, num_key_value_heads=2, **_COMMON),
    "gemma2": transformers.Gemma2Config(hidden_size=32, intermediate_size=64, num_hidden_layers=2, head_dim=8,
                                        num_attention_heads=4, num_key_value_heads=2, sliding_window=4,
                                        **_COMMON),
    "gemma3": transformers.Gemma3TextConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                                            head_dim=8, num_attention_heads=4, num_key_value_heads=1,
                                            sliding_window=4, **_COMMON),
    "gpt2": transformers.GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=64, vocab_size=VOCAB,
                                    bos_token_id=256, eos_token_id=257),
    "neox": transformers.GPTNeoXConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                       num_attention_heads=4, use_parallel_residual=True, **_COMMON),
    "neox_sequential": transformers.GPTNeoXConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                                  num_attention_heads=4, use_parallel_residual=False, **_COMMON),
    "gemma": transformers.GemmaConfig(head_dim=8, **_LLAMA_SHAPE),
    "olmo": transformers.OlmoConfig(clip_qkv=2.0, **_LLAMA_SHAPE),
    "olmo2": transformers.Olmo2Config(**_LLAMA_SHAPE),
    "phi": transformers.PhiConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                  partial_rotary_factor=0.5, **_COMMON, **_IDS),
    "phi_qk_norm": transformers.PhiConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                          num_attention_heads=4, qk_layernorm=True, **_COMMON, **_IDS),
    "phi3": transformers.Phi3Config(**_LLAMA_SHAPE),
    "stablelm": transformers.StableLmConfig(qk_layernorm=True, partial_rotary_factor=0.25, **_LLAMA_SHAPE),
    "stablelm_parallel": transformers.StableLmConfig(use_parallel_residual=True, **_LLAMA_SHAPE),
    "gptj": transformers.GPTJConfig(n_embd=32, n_layer=2, n_head=4, rotary_dim=4, n_positions=64, vocab_size=VOCAB,
                                    **_IDS),
    "falcon": transformers.FalconConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                        multi_query=True, parallel_attn=True, alibi=False,
                                        max_position_embeddings=64, vocab_size=VOCAB, **_IDS),
    "falcon_new": transformers.FalconConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                            num_kv_heads=2, new_decoder_architecture=True, bias=True,
                                            max_position_embeddings=64, vocab_size=VOCAB, **_IDS),
    "falcon_rw": transformers.FalconConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                           multi_query=False, parallel_attn=False, alibi=True, bias=True,
                                           max_position_embeddings=64, vocab_size=VOCAB, **_IDS),
    "granite": transformers.GraniteConfig(embedding_multiplier=6.0, residual_multiplier=0.3,
                                          attention_multiplier=0.2, logits_scaling=4.0, **_LLAMA_SHAPE),
    "cohere": transformers.CohereConfig(use_qk_norm=True, logit_scale=0.5, **_LLAMA_SHAPE),
    "bloom": transformers.BloomConfig(hidden_size=32, n_layer=2, n_head=4, vocab_size=VOCAB, **_IDS),
    "opt": transformers.OPTConfig(hidden_size=32, ffn_dim=64, num_hidden_layers=2, num_attention_heads=4,
                                  word_embed_proj_dim=32, max_position_embeddings=64, vocab_size=VOCAB, **_IDS),
    "smollm3": transformers.SmolLM3Config(**{**_LLAMA_SHAPE, "num_hidden_layers": 4}),  # layer 3 has no rotary
    "mixtral": transformers.MixtralConfig(num_local_experts=4, num_experts_per_tok=2, **_LLAMA_SHAPE),
    "qwen2_moe": transformers.Qwen2MoeConfig(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=16,
                                             shared_expert_intermediate_size=32, mlp_only_layers=[1],
                                             **{**_LLAMA_SHAPE, "num_hidden_layers": 3}),
    "olmoe": transformers.OlmoeConfig(num_experts=4, num_experts_per_tok=2, **_LLAMA_SHAPE),
    "gpt_neo": transformers.GPTNeoConfig(hidden_size=32, num_layers=2, num_heads=4, window_size=4,
                                         attention_types=[[["global", "local"], 1]], max_position_embeddings=64,
                                         vocab_size=VOCAB, **_IDS),
    "olmo3": transformers.Olmo3Config(**_LLAMA_SHAPE),
    "qwen3_moe": transformers.Qwen3MoeConfig(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=16,
                                             head_dim=8, norm_topk_prob=True, **_LLAMA_SHAPE),
}
FAMILIES = list(CONFIGS)


@functools.lru_cache(maxsize=1)
def byte_tokenizer() -> PreTrainedTokenizerFast:
    """A real fast tokenizer over bytes: 256 byte tokens, then <bos>, <eos>, <pad>, <unk>."""
    byte_map = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(byte_map))}
    for tok in ("<bos>", "<eos>", "<pad>", "<unk>"):
        vocab[tok] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>",
                                   pad_token="<pad>", unk_token="<unk>")


def hf_model(family: str, seed: int = 0, attn: str = "sdpa") -> transformers.PreTrainedModel:
    torch.manual_seed(seed)
    config = CONFIGS[family].__class__.from_dict(CONFIGS[family].to_dict())
    config._attn_implementation = "eager" if family == "gemma2" else attn  # HF has no SDPA path for Gemma 2
    cls = transformers.AutoModelForCausalLM._model_mapping[type(config)]
    if not cls._supports_sdpa:  # Bloom: eager attention only
        config._attn_implementation = "eager"
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    # Random init leaves norms at identity; perturb every parameter so each one matters to the output.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


def save_model_dir(folder, family: str = "llama", seed: int = 0):
    """A local model folder (weights + byte tokenizer), as a user's ``--model DIR`` would be; returns ``folder``."""
    hf_model(family, seed).save_pretrained(folder)
    byte_tokenizer().save_pretrained(folder)
    return folder


def hooked(family: str, seed: int = 0) -> ms.HookedModel:
    return ms.HookedModel(hf_model(family, seed), byte_tokenizer(), name=f"tiny-{family}")
