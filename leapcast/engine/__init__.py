"""Prefill and decode loops, KV caches, sampling."""
