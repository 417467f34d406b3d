"""HookedModel: one canonical set of hook points over any supported Hugging Face causal LM.

The model runs HF's own forward pass; hooks only observe or replace tensors at the canonical points, so outputs
are HF's to the bit when nothing is replaced.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from . import attention, offload
from .adapters import Adapter, adapter_for
from .adapters.base import Site, resolve_sites
from .config import ModelConfig, parse_dtype, read_config
from .hook_points import HookNamespace, HookPoint
from .hooking import OBSERVER_ATTR, Hook, HookFn, HookSession, catch_stop
from .norms import NormSpec
from .tokens import Inputs, Tokens, encode, tokenizer_adds_bos

if TYPE_CHECKING:
    from .cache import ActivationCache

log = logging.getLogger(__name__)


_splicer: Callable[..., Any] | None = None


def set_splicer(fn: Callable[..., Any]) -> None:
    """Install ``HookedModel.spliced``'s implementation (:func:`mechscope.dictionaries.splice.spliced` calls this
    when imported)."""
    global _splicer
    _splicer = fn


class HookedModel:
    """A Hugging Face causal LM with canonical hook points.

    >>> model = load_model("smollm2-135m")
    >>> logits, cache = model.run_with_cache("Hello", names=["blocks.6.resid_post"])
    """

    def __init__(self, hf_model: nn.Module, tokenizer: Any = None, name: str | None = None):
        self.hf = hf_model.eval()
        self.tokenizer = tokenizer
        config = hf_model.config
        self.adapter: Adapter = adapter_for(getattr(config, "model_type", "?"), config)
        a = self.adapter
        self.blocks: nn.ModuleList = hf_model.get_submodule(a.layers)
        self.embed_module: nn.Module = hf_model.get_submodule(a.token_embed or a.embed_site().path)
        """The token embedding (its weight is ``W_E``; its input is the token ids)."""
        self.pos_embed_module: nn.Module | None = hf_model.get_submodule(a.pos_embed) if a.pos_embed else None
        self.final_norm_module: nn.Module = hf_model.get_submodule(a.final_norm)
        self.unembed_module: nn.Module = hf_model.get_submodule(a.unembed)
        self.layer_sites: list[dict[str, Site]] = [resolve_sites(a, config, block) for block in self.blocks]
        """Per block: the site of every hook kind that block has (``adapters.base.resolve_sites``)."""
        param = next(hf_model.parameters())
        parallel = a.parallel_residual(config)
        self.cfg: ModelConfig = read_config(
            config, name=name or getattr(config, "_name_or_path", "") or "model",
            family=a.name, n_layers=len(self.blocks), d_vocab=self.unembed_module.weight.shape[0],
            dtype=param.dtype, device=offload.input_device(hf_model, a.embed_site().path),
            parallel_residual=parallel, default_prepend_bos=tokenizer_adds_bos(tokenizer),
            n_kv_heads=a.n_kv_heads(config) if a.n_kv_heads else None)
        fixed = ({"resid_pre", "resid_post"} | (set() if parallel else {"resid_mid"})
                 | ({"attn.pattern"} if a.registry_pattern else set()))
        self.namespace = HookNamespace(self.cfg.n_layers, [tuple(fixed | set(s)) for s in self.layer_sites],
                                       a.global_kinds())
        self._default_attn = config._attn_implementation
        self._eager_users = 0
        self._takes_position_ids = "position_ids" in inspect.signature(hf_model.forward).parameters

    # -- hook points -----------------------------------------------------------------------------------------
    def hook_names(self) -> list[str]:
        """Every canonical hook point of this model, in computation order."""
        return self.namespace.names

    def resolve(self, name: str) -> HookPoint:
        """Parse a hook point name (canonical or TransformerLens style); raises with close valid names."""
        return self.namespace.resolve(name)

    def _sync_attn_implementation(self) -> None:
        want = attention.NAME if self._eager_users > 0 else self._default_attn
        if self.hf.config._attn_implementation != want:
            self.hf.config._attn_implementation = want

    def _pairs(self, fwd_hooks: Iterable[tuple[str | Callable[[str], bool], HookFn]]) -> list[tuple[HookPoint, HookFn]]:
        pairs: list[tuple[HookPoint, HookFn]] = []
        for item in fwd_hooks:
            if not (isinstance(item, (tuple, list)) and len(item) == 2 and callable(item[1])):
                raise TypeError(f"each hook is a (name, fn) pair with fn(act, hook); got {item!r}")
            name, fn = item
            points = self.namespace.filter(name) if callable(name) else [self.resolve(name)]
            pairs.extend((p, fn) for p in points)
        return pairs

    @contextlib.contextmanager
    def hooks(self, fwd_hooks: Iterable[tuple[str | Callable[[str], bool], HookFn]]) -> Iterator[HookedModel]:
        """Attach ``(name, fn)`` hooks for the duration of the block; they are removed even on error.

        ``fn(act, hook)`` returns None to observe, or a tensor of the same shape and dtype to replace ``act``.
        ``name`` may also be a predicate on hook names, attaching ``fn`` to every point it accepts.
        """
        with HookSession(self, self._pairs(fwd_hooks)):
            yield self

    def spliced(self, *args: Any, **kwargs: Any):
        """Replace activations with dictionary reconstructions; see :func:`mechscope.dictionaries.splice.spliced`.

        Dictionaries sit above models, so :mod:`mechscope.dictionaries.splice` hands its function in
        (:func:`set_splicer`) instead of models importing it; ``import mechscope`` always loads it."""
        if _splicer is None:
            raise RuntimeError("splicing needs mechscope.dictionaries: import mechscope (or mechscope.dictionaries)")
        return _splicer(self, *args, **kwargs)

    # -- tokens ----------------------------------------------------------------------------------------------
    def to_tokens(self, text: str | Sequence[str], prepend_bos: bool | None = None,
                  padding_side: str = "right") -> Int[Tensor, "batch pos"]:
        """Token ids (batch, pos). ``prepend_bos=None`` follows the model's own tokenizer convention."""
        return self.tokenize(text, prepend_bos, padding_side).input_ids

    def tokenize(self, text: str | Sequence[str], prepend_bos: bool | None = None,
                 padding_side: str = "right") -> Tokens:
        """Token ids with the attention mask (None when nothing is padded)."""
        bos = self.cfg.default_prepend_bos if prepend_bos is None else prepend_bos
        tokens = encode(self.tokenizer, text, bos, padding_side)
        self._check_length(tokens.input_ids)
        return Tokens(tokens.input_ids.to(self.cfg.device),
                      None if tokens.attention_mask is None else tokens.attention_mask.to(self.cfg.device))

    def to_str_tokens(self, text: str | Tensor, prepend_bos: bool | None = None) -> list[str]:
        ids = self.to_tokens(text, prepend_bos)[0] if isinstance(text, str) else text.flatten()
        return [self.tokenizer.decode([int(i)]) for i in ids]

    def to_single_token(self, text: str) -> int:
        """The id of ``text`` if it is exactly one token, else a ValueError showing how it splits."""
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"] if self.tokenizer else []
        if len(ids) != 1:
            pieces = [self.tokenizer.decode([i]) for i in ids] if self.tokenizer else []
            raise ValueError(f"{text!r} is not a single token: it splits into {len(ids)} tokens {pieces}")
        return int(ids[0])

    def to_string(self, ids: Tensor | Sequence[int]) -> str:
        return self.tokenizer.decode([int(i) for i in torch.as_tensor(ids).flatten()])

    def _check_length(self, ids: Tensor) -> None:
        if ids.ndim != 2 or ids.shape[1] == 0:
            raise ValueError(f"token ids must be (batch, pos) with pos >= 1, got shape {tuple(ids.shape)}")
        if ids.shape[1] > self.cfg.n_ctx:
            raise ValueError(f"input has {ids.shape[1]} tokens but this model's context is {self.cfg.n_ctx} tokens")

    def as_tokens(self, inputs: Inputs, prepend_bos: bool | None = None) -> Tokens:
        """Normalise text, a list of texts, a LongTensor or :class:`Tokens` to :class:`Tokens`."""
        if isinstance(inputs, Tokens):
            self._check_length(inputs.input_ids)
            return inputs
        if isinstance(inputs, Tensor):
            ids = inputs.unsqueeze(0) if inputs.ndim == 1 else inputs
            if ids.dtype not in (torch.long, torch.int32, torch.int64):
                raise TypeError(f"token ids must be an integer tensor, got {ids.dtype}")
            self._check_length(ids)
            if int(ids.max()) >= self.cfg.d_vocab or int(ids.min()) < 0:
                raise ValueError(f"token ids must lie in 0..{self.cfg.d_vocab - 1}")
            return Tokens(ids.long().to(self.cfg.device))
        return self.tokenize(inputs, prepend_bos)

    # -- running ---------------------------------------------------------------------------------------------
    def _forward(self, tokens: Tokens) -> Tensor:
        kwargs: dict[str, Any] = {"input_ids": tokens.input_ids, "use_cache": False}
        mask = tokens.attention_mask
        if mask is not None:
            kwargs["attention_mask"] = mask
            # Right padding keeps HF's own positions (so every position equals a plain HF call); rows padded on
            # the left count positions from their first real token.
            if self._takes_position_ids and not bool(mask[:, 0].all()):
                kwargs["position_ids"] = (mask.cumsum(-1) - 1).clamp(min=0)
        return self.hf(**kwargs).logits

    def __call__(self, inputs: Inputs, prepend_bos: bool | None = None) -> Float[Tensor, "batch pos vocab"]:
        """Logits (batch, pos, vocab) of HF's forward pass with whatever hooks are attached."""
        return self._forward(self.as_tokens(inputs, prepend_bos))

    forward = __call__

    def run_with_hooks(self, inputs: Inputs, fwd_hooks: Iterable[tuple[str, HookFn]] = (),
                       prepend_bos: bool | None = None) -> Float[Tensor, "batch pos vocab"]:
        with self.hooks(fwd_hooks):
            return self(inputs, prepend_bos)

    def run_with_cache(self, inputs: Inputs, names: Any = None, *, stop_at_layer: int | None = None,
                       stop_early: bool = True, grad: bool = False, device: str | torch.device | None = None,
                       dtype: torch.dtype | str | None = None, prepend_bos: bool | None = None,
                       ) -> tuple[Tensor | None, ActivationCache]:
        """Run the model and cache the activations at ``names`` (None = every hook point).

        Only the requested points are recorded. With ``stop_early`` (the default) the forward pass stops right after
        the last requested point, so the returned logits are None unless ``logits`` was requested or the pass got
        there anyway. ``stop_at_layer=L`` stops before block L (exclusive, as in TransformerLens). ``grad=True``
        keeps the autograd graph; ``device`` / ``dtype`` move cached tensors as they are recorded (e.g. to CPU and
        float16 to save memory; ``dtype`` takes the names ``load_model`` takes, such as ``"bf16"``).
        """
        from .cache import ActivationCache

        if dtype is not None:
            dtype = parse_dtype(dtype)
        if device is not None:
            offload.check_device(device)
        if stop_at_layer is not None and not 0 <= stop_at_layer <= self.cfg.n_layers:
            raise ValueError(f"stop_at_layer must be in 0..{self.cfg.n_layers}, got {stop_at_layer}")
        points = self.namespace.filter(names)
        if not points:
            raise ValueError(f"names={names!r} selects no hook point; see model.hook_names()")
        tokens = self.as_tokens(inputs, prepend_bos)
        store: dict[str, Tensor] = {}

        def record(act: Tensor, hook: Hook) -> None:
            t = act if grad else act.detach()
            if device is not None or dtype is not None:
                t = t.to(device=device or t.device, dtype=dtype or t.dtype)
            store[hook.name] = t

        setattr(record, OBSERVER_ATTR, True)
        last = points[-1] if stop_early and points[-1].name != "logits" else None
        logits = None
        with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
            with HookSession(self, [(p, record) for p in points], stop_after=last,
                             stop_before_layer=stop_at_layer), catch_stop():
                logits = self._forward(tokens)
        return logits, ActivationCache(store, self, tokens)

    @torch.no_grad()
    def generate(self, prompt: str | Sequence[str], max_new_tokens: int = 20, *, do_sample: bool = False,
                 temperature: float = 1.0, top_p: float | None = None, fwd_hooks: Iterable[tuple[str, HookFn]] = (),
                 prepend_bos: bool | None = None, seed: int | None = None) -> str | list[str]:
        """Continue ``prompt`` (greedy unless ``do_sample``) with ``fwd_hooks`` active at every step.

        Hooks see each step's tensors: the whole prompt first, then one position per new token.
        Returns the new text only (a list when given a list).
        """
        if max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1")
        single = isinstance(prompt, str)
        tokens = self.tokenize([prompt] if isinstance(prompt, str) else list(prompt), prepend_bos, padding_side="left")
        if tokens.input_ids.shape[1] + max_new_tokens > self.cfg.n_ctx:
            raise ValueError(f"prompt + max_new_tokens exceeds the model's context of {self.cfg.n_ctx} tokens")
        mask = tokens.attention_mask if tokens.attention_mask is not None else torch.ones_like(tokens.input_ids)
        if seed is not None:
            torch.manual_seed(seed)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        sampling = {"temperature": temperature, "top_p": top_p} if do_sample else {}
        with self.hooks(fwd_hooks):
            out = self.hf.generate(input_ids=tokens.input_ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                                   do_sample=do_sample, pad_token_id=pad, **sampling)
        texts = self.tokenizer.batch_decode(out[:, tokens.input_ids.shape[1]:], skip_special_tokens=True)
        return texts[0] if single else texts

    # -- weights ---------------------------------------------------------------------------------------------
    # Each weight below is what its hook point means: multipliers HF applies around a module (Gemma's embedding
    # scale, Granite's embedding / residual multipliers and logit scaling, Cohere's logit scale) are folded in,
    # so ``W_E[token]`` is that token's ``embed``, ``z @ W_O + b_O`` is ``attn_out`` and ``final_norm @ W_U + b_U``
    # are the logits. They are plain parameters (editable in place) wherever no multiplier applies.
    def _weight(self, module: nn.Module, name: str) -> Tensor | None:
        return offload.materialise(self.hf, module, name)

    def _scaled(self, t: Tensor | None, *factors: float | None) -> Tensor | None:
        f = 1.0
        for x in factors:
            f *= 1.0 if x is None else float(x)
        return t if t is None or f == 1.0 else t * f

    def _config_scale(self, site: Site | None) -> float | None:
        return None if site is None or site.scale is None else getattr(self.hf.config, site.scale)

    @property
    def _unembed_scale(self) -> float | None:
        return self.adapter.unembed_scale(self.hf.config) if self.adapter.unembed_scale else None

    @property
    def W_U(self) -> Float[Tensor, "d_model vocab"]:
        return self._scaled(self._weight(self.unembed_module, "weight"), self._unembed_scale).T

    @property
    def b_U(self) -> Float[Tensor, " vocab"] | None:
        return self._scaled(self._weight(self.unembed_module, "bias"), self._unembed_scale)

    @property
    def W_E(self) -> Float[Tensor, "vocab d_model"]:
        """Token embeddings as they enter the residual stream (Bloom: before its embedding LayerNorm)."""
        embed_scale = getattr(self.embed_module, "scalar_embed_scale", None)  # Gemma's scaled embedding
        return self._scaled(self._weight(self.embed_module, "weight"), embed_scale,
                            self._config_scale(self.adapter.embed_site()))

    def _block_module(self, layer: int, kind: str) -> nn.Module:
        sites = self.layer_sites[layer]
        if kind not in sites:
            raise ValueError(f"block {layer} of this {self.adapter.name} model has no {kind} site")
        return self.blocks[layer].get_submodule(sites[kind].path)

    def W_O(self, layer: int) -> Float[Tensor, "heads d_head d_model"]:
        """The attention output projection of ``layer`` split by head (times Granite's residual multiplier)."""
        module = self._block_module(layer, "attn.z")
        w = io_weight(module, self._weight(module, "weight"))
        w = self._scaled(w, self._config_scale(self.layer_sites[layer].get("attn_out")))
        return w.reshape(self.cfg.n_heads, self.cfg.d_head, -1)

    def b_O(self, layer: int) -> Float[Tensor, " d_model"] | None:
        module = self._block_module(layer, "attn.z")
        return self._scaled(self._weight(module, "bias"), self._config_scale(self.layer_sites[layer].get("attn_out")))

    def attn_out_norm(self, layer: int) -> NormSpec | None:
        """The norm between the attention output projection and the residual (Gemma 2/3, OLMo-2), else None."""
        if self.adapter.attn_out_norm is None:
            return None
        return NormSpec.from_module(self.blocks[layer].get_submodule(self.adapter.attn_out_norm),
                                    self.adapter.norm_kind, root=self.hf)

    @property
    def final_norm(self) -> NormSpec:
        return NormSpec.from_module(self.final_norm_module, self.adapter.norm_kind, root=self.hf)

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | str | None = None) -> HookedModel:
        if offload.is_dispatched(self.hf):
            raise ValueError("this model was placed by accelerate (device_map=...); reload it with another "
                             "device_map instead of moving it with .to()")
        if device is not None:
            offload.check_device(device)
        self.hf.to(device=device, dtype=None if dtype is None else parse_dtype(dtype))
        param = next(self.hf.parameters())
        self.cfg = dataclasses.replace(self.cfg, dtype=param.dtype, device=param.device)
        return self

    def parameters(self) -> Iterator[nn.Parameter]:
        return self.hf.parameters()

    def __repr__(self) -> str:
        c = self.cfg
        return (f"HookedModel({c.name!r}, family={c.family}, layers={c.n_layers}, d_model={c.d_model}, "
                f"heads={c.n_heads}/{c.n_kv_heads}kv, d_mlp={c.d_mlp}, vocab={c.d_vocab}, {c.dtype}, {c.device})")


def io_weight(module: nn.Module, weight: Tensor | None = None) -> Tensor:
    """A linear layer's weight as (in, out), for both ``nn.Linear`` and HF's GPT-2 ``Conv1D`` (which stores
    (in, out)); ``weight`` overrides the module's own tensor (an offloaded module's materialised weight)."""
    w = module.weight if weight is None else weight
    if type(module).__name__ == "Conv1D":
        return w
    return w.T

