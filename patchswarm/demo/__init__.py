"""The offline demo: a bundled repository with a real bug, its issue, and a scripted model."""
