"""Language models behind a small interface (docs/reference.md "LLM extractor").

- `selfmodel.llm.base`: what callers use: `ChatModel` (a structured-output call returning a parsed pydantic
  object with its token usage, and a plain-text completion), `BatchChatModel` (the Batch API), `Usage`,
  and the errors (`LLMError`, `MalformedOutput`).
- `selfmodel.llm.openai_client`: the implementation over the `openai` client (any OpenAI-compatible endpoint),
  and `chat_model_from_settings`; the only module that imports `openai`.
- `selfmodel.llm.budget`: `Budget`, the cost of a run at the configured prices, with a cap that stops cleanly.
- `selfmodel.llm.pii`: `redact_pii`, applied on this machine to every text before it is sent.

Nothing here imports Prefect; nothing is imported by the default offline path.
"""
