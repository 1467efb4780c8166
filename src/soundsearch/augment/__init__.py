"""Caption augmentation with a chat model: the paper's ClothoV2_GPT (section 2.4.4, Table 1).

Every ClothoV2 development caption is sent, with its clip's keywords, to an OpenAI-compatible
chat-completions endpoint (OpenAI, or a local llama.cpp / vLLM / Ollama server), which answers with
five rephrasings. Answers are parsed and checked, cached line by line (an interrupted run resumes),
and written to the variations file that the fine-tuning stage reads
(``soundsearch.data.gpt.read_variations``).

Modules: ``prompt`` (the Table 1 prompt, parsing and checks), ``client`` (HTTP, retries, pacing),
``cache`` (the JSONL answer cache), ``job`` (the run). Nothing here touches the network at import.
"""

from soundsearch.augment.cache import CacheError, read_cache
from soundsearch.augment.client import (
    ChatClient,
    ChatReply,
    EndpointError,
    RateLimiter,
    RequestFailed,
    RetryPolicy,
    parse_retry_after,
)
from soundsearch.augment.job import (
    OPENAI_BASE_URL,
    AugmentConfig,
    AugmentSummary,
    CaptionItem,
    clotho_items,
    default_cache_path,
    output_records,
    pending_items,
    run_augment,
)
from soundsearch.augment.prompt import (
    MAX_WORDS,
    PAPER_TEMPLATE,
    build_query,
    check_template,
    check_variation,
    clean_variation,
    parse_response,
    prompt_version,
    select_variations,
)

__all__ = [
    "MAX_WORDS",
    "OPENAI_BASE_URL",
    "PAPER_TEMPLATE",
    "AugmentConfig",
    "AugmentSummary",
    "CacheError",
    "CaptionItem",
    "ChatClient",
    "ChatReply",
    "EndpointError",
    "RateLimiter",
    "RequestFailed",
    "RetryPolicy",
    "build_query",
    "check_template",
    "check_variation",
    "clean_variation",
    "clotho_items",
    "default_cache_path",
    "output_records",
    "parse_response",
    "parse_retry_after",
    "pending_items",
    "prompt_version",
    "read_cache",
    "run_augment",
    "select_variations",
]
