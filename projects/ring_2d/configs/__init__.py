"""Configs of the ring experiment."""
