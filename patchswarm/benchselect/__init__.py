"""`patchswarm bench-select`: selection measured on real candidates of other systems, against graded truth."""
