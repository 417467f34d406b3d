"""Chat LLM clients for autointerp: an OpenAI-compatible HTTP client and a local Hugging Face model.

Both expose ``chat(messages) -> str`` and ``yes_probability(messages) -> float | None`` (the probability that the
reply starts with "yes" rather than "no", from the first token's log-probabilities; None when the reply is neither,
so that an unusable answer is never counted as a guess). :class:`OpenAIClient` speaks
``POST {base_url}/chat/completions`` with the standard library's ``urllib`` (vLLM, llama.cpp server, hosted
APIs, or :mod:`mechscope.features.llm_server`). :class:`LocalClient` runs a model in-process with its chat
template; the server wraps the same class, so both paths compute the same thing.
"""

from __future__ import annotations

import json
import math
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

Message = dict[str, str]


class LLMError(RuntimeError):
    """The LLM endpoint could not be reached or answered something unusable."""


class LLMClient(Protocol):
    def chat(self, messages: list[Message], max_tokens: int = 128, temperature: float = 0.0) -> str: ...

    def yes_probability(self, messages: list[Message]) -> float | None: ...


def yes_from_top(top: list[tuple[str, float]]) -> float | None:
    """P(yes) / (P(yes) + P(no)) from ``(token, logprob)`` candidates; None if neither word is among them."""
    yes = sum(math.exp(lp) for t, lp in top if t.strip().lower() == "yes")
    no = sum(math.exp(lp) for t, lp in top if t.strip().lower() == "no")
    return yes / (yes + no) if yes + no > 0 else None


def yes_from_text(text: str) -> float | None:
    """1 for a reply starting with "yes", 0 for "no", None for anything else (unparseable: not a 50/50 guess)."""
    word = text.strip().lstrip("\"'*`([").lower()
    if word.startswith("yes"):
        return 1.0
    if word.startswith("no") and not word[2:3].isalpha():  # "no", "no." but not "none" / "not sure"
        return 0.0
    return None


@dataclass
class TokenLogprob:
    token: str
    logprob: float
    top: list[tuple[str, float]] = field(default_factory=list)


@dataclass
class Completion:
    text: str
    tokens: list[TokenLogprob]
    finish_reason: str
    prompt_tokens: int


class ChatModel(Protocol):
    """What :class:`LocalClient` runs: a :class:`~mechscope.models.hooked.HookedModel` (its ``hf`` generates), or an
    HF causal LM carrying its ``tokenizer``; the tokenizer needs a chat template."""

    tokenizer: Any


class LocalClient:
    """A chat model run in this process (default: the built-in SmolLM2-135M-Instruct)."""

    def __init__(self, model: str | ChatModel = "smollm2-135m"):
        if isinstance(model, str):
            from ..models.loading import load_model

            model = load_model(model)
        self.name = getattr(getattr(model, "cfg", None), "name", "local")
        self.hf: Any = model.hf if hasattr(model, "hf") else model  # the HF model that generates
        self.tokenizer = model.tokenizer
        if not getattr(self.tokenizer, "chat_template", None):
            raise LLMError(f"{self.name} has no chat template: autointerp needs an instruct model")
        self.lock = threading.Lock()

    def _ids(self, messages: list[Message]) -> torch.Tensor:
        enc = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True,
                                                 return_tensors="pt")
        return enc["input_ids"].to(next(self.hf.parameters()).device)

    @torch.no_grad()
    def complete(self, messages: list[Message], max_tokens: int = 128, temperature: float = 0.0,
                 top_logprobs: int = 0, seed: int | None = 0) -> Completion:
        """Generate a reply; greedy at ``temperature == 0``. ``top_logprobs`` per generated token."""
        ids = self._ids(messages)
        tok = self.tokenizer
        sampling = {"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False}
        with self.lock:
            if seed is not None:
                torch.manual_seed(seed)
            out = self.hf.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_tokens,
                                   pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
                                   output_logits=True, return_dict_in_generate=True, **sampling)
        new = out.sequences[0, ids.shape[1]:].tolist()
        tokens = []
        for i, t in enumerate(new):
            lp = out.logits[i][0].float().log_softmax(-1)
            top = []
            if top_logprobs > 0:
                v, j = lp.topk(top_logprobs)
                top = [(tok.decode([int(a)]), float(b)) for a, b in zip(j, v)]
            tokens.append(TokenLogprob(tok.decode([t]), float(lp[t]), top))
        eos = tok.eos_token_id
        finish = "stop" if new and new[-1] == eos else "length"
        text = tok.decode(new, skip_special_tokens=True)
        return Completion(text, tokens, finish, int(ids.shape[1]))

    def chat(self, messages: list[Message], max_tokens: int = 128, temperature: float = 0.0) -> str:
        return self.complete(messages, max_tokens, temperature).text.strip()

    def yes_probability(self, messages: list[Message]) -> float | None:
        c = self.complete(messages, max_tokens=1, top_logprobs=20)
        p = yes_from_top(c.tokens[0].top) if c.tokens else None
        return p if p is not None else yes_from_text(c.text)


class OpenAIClient:
    """Client of an OpenAI-compatible ``/v1/chat/completions`` endpoint (stdlib ``urllib``)."""

    def __init__(self, base_url: str, model: str = "default", api_key: str | None = None, timeout: float = 120.0):
        self.base_url = base_url.rstrip("/")
        if not self.base_url.endswith("/v1"):
            self.base_url += "/v1"
        self.model = model
        self.api_key = api_key
        self.timeout = timeout

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        req = urllib.request.Request(f"{self.base_url}/chat/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json",
                                              **({"Authorization": f"Bearer {self.api_key}"} if self.api_key else {})})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as e:
            raise LLMError(f"{self.base_url} answered HTTP {e.code}: {e.read()[:300]!r}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
            raise LLMError(f"cannot reach the LLM at {self.base_url}: {e}") from None

    def chat(self, messages: list[Message], max_tokens: int = 128, temperature: float = 0.0) -> str:
        data = self._post({"model": self.model, "messages": messages, "max_tokens": max_tokens,
                           "temperature": temperature})
        try:
            return str(data["choices"][0]["message"]["content"]).strip()
        except (KeyError, IndexError, TypeError):
            raise LLMError(f"unexpected reply from {self.base_url}: {str(data)[:300]}") from None

    def yes_probability(self, messages: list[Message]) -> float | None:
        data = self._post({"model": self.model, "messages": messages, "max_tokens": 1, "temperature": 0.0,
                           "logprobs": True, "top_logprobs": 20})
        try:
            choice = data["choices"][0]
            content = ((choice.get("logprobs") or {}).get("content")) or []
            if content:
                p = yes_from_top([(t["token"], t["logprob"]) for t in content[0].get("top_logprobs", [])])
                if p is not None:
                    return p
            return yes_from_text(choice["message"]["content"] or "")
        except (KeyError, IndexError, TypeError, AttributeError):
            raise LLMError(f"unexpected reply from {self.base_url}: {str(data)[:300]}") from None
