"""The context stage: which files of the repository the solving model sees (prefilter, relevance, budget)."""
