"""Attention heads of vision transformers: maps, rollout, head statistics."""
