"""The assistant: encoder features -> BridgeFormer projector -> instruction-injected frozen LLM."""
