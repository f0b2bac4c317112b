"""Chat backends of the LLM explainer and judge: any OpenAI-compatible endpoint, or a local
``transformers`` chat model. One call is one request, with no retry: the retries, the bound on
concurrency and the cache are :class:`crosstime.interpret.llm.LLMClient`'s, so they are the same
for every backend.

A backend raises :class:`LLMError` for a failure that no retry can fix (a refused key, an unknown
model, a request the server rejects) and :class:`TransientFailure` for one worth retrying (429,
5xx, a timeout, a dropped connection), with the server's ``Retry-After`` when it gave one.
"""

from __future__ import annotations

import email.utils
import json
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from crosstime.errors import CrosstimeError

Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": ...}

RETRYABLE_STATUS = frozenset({408, 409, 429})  # and every 5xx: the server's or a proxy's passing trouble


class LLMError(CrosstimeError):
    """A failure of the LLM backend that no retry fixes; the message names the endpoint and the fix."""


class TransientFailure(Exception):
    """A failure worth retrying (429, 5xx, timeout, dropped connection); ``retry_after`` in seconds
    is the server's ``Retry-After`` header when it sent one."""

    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Reply:
    """One chat reply: its ``text``, the tokens billed (None when the server reports no usage) and
    the ``model`` id the server says answered."""

    text: str
    prompt_tokens: int | None
    completion_tokens: int | None
    model: str


class Backend(Protocol):
    """One chat request, no retry. ``model_id`` is what the cache keys replies by."""

    model_id: str

    def complete(self, messages: Sequence[Message], params: dict[str, Any]) -> Reply: ...


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: a number of seconds or an HTTP date (RFC 9110)."""
    if value is None or not value.strip():
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):  # neither seconds nor a date: as if the header were absent
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class OpenAICompatible:
    """A chat-completions endpoint through the official ``openai`` client: OpenAI, vLLM
    (``vllm serve``), Ollama (``/v1``), llama.cpp's ``llama-server``.

    ``url`` is the API base (``https://api.openai.com/v1``, ``http://127.0.0.1:8000/v1``);
    ``api_key_env`` the environment variable holding the key (None: a local server that wants none);
    ``timeout`` the seconds one request may take. The client's own retries are off
    (``max_retries=0``): :class:`~crosstime.interpret.llm.LLMClient` retries, so that a refused key
    stops every worker at once and each retry is counted and bounded the same way for every backend.
    """

    def __init__(self, url: str, model: str, api_key_env: str | None = "OPENAI_API_KEY", timeout: float = 60.0):
        import openai  # lazy: optional extra `llm`

        key = "unused"  # the client insists on a key; a local server ignores it
        if api_key_env is not None:
            key = os.environ.get(api_key_env, "")
            if not key:
                raise LLMError(f"the LLM key variable {api_key_env} is not set: export it, or pass no key "
                               f"variable for a local server that needs none ({url})")
        self.url, self.model_id, self.timeout = url, model, timeout
        self._openai = openai
        self._client = openai.OpenAI(base_url=url, api_key=key, timeout=timeout, max_retries=0)

    def complete(self, messages: Sequence[Message], params: dict[str, Any]) -> Reply:
        """One request; raises :class:`LLMError` or :class:`TransientFailure` on failure."""
        openai = self._openai
        try:
            response = self._client.chat.completions.create(model=self.model_id, messages=list(messages), **params)
        except openai.APITimeoutError as err:
            raise TransientFailure(f"no reply within {self.timeout:g} s") from err
        except openai.APIConnectionError as err:
            raise TransientFailure(f"cannot reach {self.url}: {err}") from err
        except openai.APIStatusError as err:
            raise self._status_failure(err) from err
        except (json.JSONDecodeError, openai.APIResponseValidationError) as err:  # a cut or garbled body
            raise TransientFailure(f"{self.url} sent a reply that is not a chat completion ({err})") from err
        if not response.choices or response.choices[0].message.content is None:
            raise TransientFailure(f"{self.url} sent a reply with no message")
        usage = response.usage
        return Reply(text=response.choices[0].message.content,
                     prompt_tokens=None if usage is None else usage.prompt_tokens,
                     completion_tokens=None if usage is None else usage.completion_tokens,
                     model=response.model or self.model_id)

    def _status_failure(self, err: Any) -> Exception:
        """The failure an HTTP error status means: retry (429, 408, 409, 5xx) or stop with the fix."""
        status = err.status_code
        if status in RETRYABLE_STATUS or status >= 500:
            return TransientFailure(f"HTTP {status} from {self.url}", parse_retry_after(err.response.headers.get("retry-after")))
        body = err.body  # the client's parse of the JSON error: {"message": ...} from OpenAI, vLLM, Ollama
        detail = str(body.get("message") if isinstance(body, dict) and body.get("message") else err.message)[:300]
        if status in (401, 403):
            return LLMError(f"the LLM server {self.url} refused the key (HTTP {status}: {detail}); check the "
                            f"key in the environment variable and its access to model {self.model_id!r}")
        if status == 404:
            return LLMError(f"the LLM server {self.url} does not know model {self.model_id!r} or the chat "
                            f"endpoint (HTTP 404: {detail}); check --llm-model against GET {self.url}/models "
                            f"and that --llm-url ends in /v1")
        return LLMError(f"the LLM server {self.url} rejected the request (HTTP {status}: {detail})")


class TransformersChat:
    """A local ``transformers`` chat model: the prompt through the tokenizer's chat template, then
    ``generate`` (greedy when ``temperature`` is 0). ``model_path`` is a folder saved by
    ``save_pretrained`` (model and tokenizer, with a chat template); nothing is downloaded.

    One generation at a time (a lock): a single model on one device gains nothing from threads."""

    def __init__(self, model_path: str | Path, device: str = "cpu"):
        import transformers  # lazy: start-up time (transformers takes seconds to import)

        path = Path(model_path)
        if not (path / "config.json").is_file():
            raise LLMError(f"{path} is not a saved transformers model (no config.json); pass the folder "
                           f"that save_pretrained wrote")
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
        if self.tokenizer.chat_template is None:
            raise LLMError(f"the tokenizer in {path} has no chat template; use an instruction-tuned (chat) model")
        self.model = transformers.AutoModelForCausalLM.from_pretrained(path, local_files_only=True).to(device).eval()
        self.device, self.model_id = device, f"transformers:{path.resolve()}"
        self._lock = threading.Lock()

    def complete(self, messages: Sequence[Message], params: dict[str, Any]) -> Reply:
        """One generation. ``params``: ``max_tokens`` (default 256) and ``temperature`` (0 = greedy)."""
        import torch  # lazy: only a local model needs it here

        ids = self.tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, return_tensors="pt",
                                                 return_dict=True)["input_ids"].to(self.device)
        temperature = float(params.get("temperature", 0.0))
        sampling = {"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False}
        with self._lock, torch.no_grad():
            out = self.model.generate(ids, attention_mask=torch.ones_like(ids),
                                      max_new_tokens=int(params.get("max_tokens", 256)),
                                      pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id, **sampling)
        new = out[0, ids.shape[1]:]
        return Reply(text=self.tokenizer.decode(new, skip_special_tokens=True), prompt_tokens=int(ids.shape[1]),
                     completion_tokens=int(new.shape[0]), model=self.model_id)
