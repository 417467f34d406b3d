"""ActivationCache: cached activations indexed by canonical name, with residual decompositions.

``cache["blocks.6.resid_post"]`` and ``cache["resid_post", 6]`` are the same tensor. The decompositions follow the
additive structure of the residual stream:

    resid_pre[L] = embed (+ pos_embed) + sum_{l < L} (attn_out[l] + mlp_out[l])
    attn_out[l]  = sum_h head_results(l)[:, :, h] + b_O[l]      (through Gemma's post-norm with its cached scale)
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, cast

import torch
from jaxtyping import Float
from torch import Tensor

from .hook_points import HookNameError, block_name, normalise_kind

if TYPE_CHECKING:
    from .attention_pattern import AttentionPattern
    from .hooked import HookedModel
    from .tokens import Tokens


class ActivationCache(Mapping):
    """Read-only mapping from canonical hook names to tensors (batch first), plus decompositions."""

    def __init__(self, store: dict[str, Tensor], model: HookedModel, tokens: Tokens):
        self._store = store
        self.model = model
        self.tokens = tokens

    # -- mapping ---------------------------------------------------------------------------------------------
    def _key(self, key: str | tuple) -> str:
        if isinstance(key, tuple):
            if len(key) == 1:
                key = key[0]
            elif len(key) == 2:
                kind, layer = key
                if layer < 0:
                    layer += self.model.cfg.n_layers
                key = block_name(int(layer), normalise_kind(kind))
            else:
                raise KeyError(f"index a cache with a name or (kind, layer), got {key!r}")
        name = self.model.resolve(cast(str, key)).name  # a name by now
        if name not in self._store:
            cached = ", ".join(list(self._store)[:8]) + (" ..." if len(self._store) > 8 else "")
            raise HookNameError(f"{name!r} was not cached; this cache holds: {cached}. "
                                f"Pass it in names=... to run_with_cache.")
        return name

    def __getitem__(self, key: str | tuple) -> Tensor:
        return self._store[self._key(key)]

    def __contains__(self, key: object) -> bool:
        try:
            self._key(key)  # type: ignore[arg-type]  # any object may be asked about; others raise TypeError
        except (HookNameError, KeyError, TypeError):
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(self._store)

    def __len__(self) -> int:
        return len(self._store)

    def __repr__(self) -> str:
        more = " ..." if len(self) > 6 else ""
        return f"ActivationCache({len(self)} tensors: {', '.join(list(self._store)[:6])}{more})"

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> ActivationCache:
        """A copy with every tensor moved (floating tensors cast to ``dtype``), e.g. ``.to("cpu", torch.float16)``."""
        moved = {k: v.to(device=device or v.device, dtype=dtype if (dtype and v.is_floating_point()) else v.dtype)
                 for k, v in self._store.items()}
        return ActivationCache(moved, self.model, self.tokens)

    # -- display ---------------------------------------------------------------------------------------------
    def attention(self, layer: int, prompt: int = 0) -> AttentionPattern:
        """Layer ``layer``'s attention pattern for ``prompt`` (padding removed), with a per-head notebook viewer.
        Needs ``blocks.{layer}.attn.pattern`` in the cache."""
        from .attention_pattern import AttentionPattern

        if layer < 0:
            layer += self.model.cfg.n_layers
        pattern = self[f"blocks.{layer}.attn.pattern"]  # (B, H, Q, K)
        if not 0 <= prompt < pattern.shape[0]:
            raise IndexError(f"prompt {prompt} out of range: this cache holds {pattern.shape[0]} prompts")
        n = int(self.tokens.lengths[prompt])
        ids = self.tokens.input_ids[prompt, :n].tolist()
        strs = [self.model.to_string([i]) for i in ids]
        return AttentionPattern(pattern[prompt, :, :n, :n].detach().float().cpu(), strs, layer, prompt)

    def view(self):
        """A summary (:mod:`mechscope.display`): the prompts and every cached tensor's shape, dtype and scale."""
        from .. import display

        title = f"ActivationCache: {len(self)} tensors"
        if not self._store:
            return display.empty("ActivationCache", "nothing was cached (pass names=... to run_with_cache)")
        rows = [[name, " × ".join(map(str, t.shape)), str(t.dtype).replace("torch.", ""), str(t.device),
                 float(t.float().norm(dim=-1).mean()) if t.is_floating_point() and t.numel() else None]
                for name, t in self._store.items()]
        prompts = [self.model.to_string(self.tokens.input_ids[b, :int(n)].tolist())
                   for b, n in enumerate(self.tokens.lengths[:4])]
        children = [display.table(["name", "shape", "dtype", "device", "mean norm (last dim)"], rows,
                                  title="cached tensors")]
        if any(".attn.pattern" in n for n in self._store):
            children.append(display.text("call cache.attention(layer) for the per-head attention viewer"))
        summary = [("prompts", int(self.tokens.input_ids.shape[0])), ("positions", int(self.tokens.input_ids.shape[1]))]
        summary += [(f"prompt {i}", p) for i, p in enumerate(prompts)]
        return display.panel(title, children, summary=summary)

    def _repr_html_(self) -> str:
        return self.view().html()

    # -- stacking --------------------------------------------------------------------------------------------
    def stack(self, kind: str, layers: range | list[int] | None = None) -> Tensor:
        """Stack a block kind across layers: (layers, batch, ...)."""
        layers = range(self.model.cfg.n_layers) if layers is None else layers
        return torch.stack([self[kind, layer] for layer in layers])

    def head_results(self, layer: int) -> Float[Tensor, "batch pos heads d_model"]:
        """Each head's contribution to ``attn_out`` of ``layer`` (the output bias excluded: see :meth:`attn_bias`).

        Needs ``blocks.{layer}.attn.z``. Through Gemma's post-attention norm the split uses that norm with the
        scale of the full output, so the heads still sum to ``attn_out``.
        """
        z = self[f"blocks.{layer}.attn.z"]  # (B, T, H, Dh)
        w_o = self.model.W_O(layer).to(device=z.device, dtype=z.dtype)  # (H, Dh, D); layers may sit elsewhere
        per_head = torch.einsum("bthd,hdm->bthm", z, w_o)  # (B, T, H, D)
        norm = self.model.attn_out_norm(layer)
        if norm is not None:
            scale = norm.scale(per_head.sum(2) + self.attn_bias(layer))  # (B, T, 1)
            per_head = norm.apply_linear(per_head, scale.unsqueeze(2)).to(z.dtype)
        return per_head

    def attn_bias(self, layer: int) -> Tensor | float:
        b = self.model.b_O(layer)
        z = self._store.get(f"blocks.{layer}.attn.z")
        return 0.0 if b is None else b if z is None else b.to(z.device)

    def stack_head_results(self, layers: range | list[int] | None = None
                           ) -> tuple[Float[Tensor, "component batch pos d_model"], list[str]]:
        """Per-head results of ``layers`` stacked as components, with labels ``L{layer}H{head}``."""
        layers = range(self.model.cfg.n_layers) if layers is None else layers
        results, labels = [], []
        for layer in layers:
            results.append(self.head_results(layer).permute(2, 0, 1, 3))  # (H, B, T, D)
            labels += [f"L{layer}H{h}" for h in range(self.model.cfg.n_heads)]
        return torch.cat(results), labels

    # -- residual decompositions -----------------------------------------------------------------------------
    def decompose_resid(self, layer: int | None = None, *, split_heads: bool = False
                        ) -> tuple[Float[Tensor, "component batch pos d_model"], list[str]]:
        """The additive components of the residual entering block ``layer`` (None: the final residual).

        Components: ``embed`` (and ``pos_embed``), then per block ``L{l}_attn`` (or its heads plus ``L{l}_attn_bias``
        with ``split_heads``) and ``L{l}_mlp``. They sum to ``resid_pre[layer]`` (or the last ``resid_post``).
        """
        n = self.model.cfg.n_layers
        layer = n if layer is None else layer
        if not 0 <= layer <= n:
            raise ValueError(f"layer must be in 0..{n}, got {layer}")
        parts, labels = [self["embed"]], ["embed"]
        if self.model.pos_embed_module is not None:
            pos = self["pos_embed"]
            parts.append(pos.expand_as(parts[0]))
            labels.append("pos_embed")
        for l in range(layer):
            if split_heads:
                heads = self.head_results(l)
                parts += list(heads.unbind(2))
                labels += [f"L{l}H{h}" for h in range(heads.shape[2])]
                bias = torch.as_tensor(self.attn_bias(l), dtype=heads.dtype, device=heads.device)
                parts.append(bias.expand_as(parts[0]).clone())
                labels.append(f"L{l}_attn_bias")
            else:
                parts.append(self[f"blocks.{l}.attn_out"])
                labels.append(f"L{l}_attn")
            parts.append(self[f"blocks.{l}.mlp_out"])
            labels.append(f"L{l}_mlp")
        return torch.stack(parts), labels

    def accumulated_resid(self, layer: int | None = None
                          ) -> tuple[Float[Tensor, "component batch pos d_model"], list[str]]:
        """The residual stream entering each block up to ``layer`` (None: all, plus the final residual)."""
        n = self.model.cfg.n_layers
        layer = n if layer is None else layer
        parts = [self[f"blocks.{l}.resid_pre"] for l in range(min(layer, n))]
        labels = [f"L{l}_resid_pre" for l in range(min(layer, n))]
        if layer == n:
            parts.append(self[f"blocks.{n - 1}.resid_post"])
            labels.append("final_resid")
        return torch.stack(parts), labels

    def final_norm_scale(self) -> Float[Tensor, "batch pos 1"]:
        """The final norm's per-position scale, from the cached final residual."""
        return self.model.final_norm.scale(self[f"blocks.{self.model.cfg.n_layers - 1}.resid_post"])

    def apply_final_norm(self, stack: Float[Tensor, "... batch pos d_model"]) -> Float[Tensor, "... batch pos d_model"]:
        """Map residual components through the final norm, linearised with the cached scale (no bias).

        Summing the result over components and adding the norm's bias gives ``final_norm`` exactly.
        """
        return self.model.final_norm.apply_linear(stack, self.final_norm_scale())
