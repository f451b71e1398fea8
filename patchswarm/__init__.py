"""patchswarm: resolve software issues with many sandboxed LLM trajectories and test-based selection."""

__version__ = "0.1.0"
