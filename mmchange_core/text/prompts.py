"""The VLM prompts of the paper (Table V / Fig. 11) and how ``--prompt`` resolves to a prompt text."""

from __future__ import annotations

#: Named prompts. ``components`` is the paper's own prompt (its default, "ours" in Table V); the
#: others are Prompt1-Prompt4 of the prompt study.
PROMPTS: dict[str, str] = {
    "components": "What are the components in this picture?",
    "these": "What are these?",
    "geographical-type": "What is the geographical type of this map?",
    "prominent-features": "What are the prominent features of this image?",
    "artificial-features": "What are the artificial features in this picture?",
}

#: The paper's labels for the same prompts.
PROMPT_ALIASES: dict[str, str] = {
    "default": "components",
    "ours": "components",
    "prompt1": "these",
    "prompt2": "geographical-type",
    "prompt3": "prominent-features",
    "prompt4": "artificial-features",
}

DEFAULT_PROMPT = PROMPTS["components"]


def resolve_prompt(prompt: str) -> str:
    """The prompt text for a key of :data:`PROMPTS` (or a paper label like ``prompt2``); other text as is."""
    key = prompt.strip().lower()
    key = PROMPT_ALIASES.get(key, key)
    if key in PROMPTS:
        return PROMPTS[key]
    return " ".join(prompt.split())
