"""The only place that imports torch, transformers and peft (lazily, inside functions/modules)."""
