"""Family 1: the char-level transformer (tokenizer, text data, model, engine task)."""
