"""Edit blocks: search/replace text from the model -> a validated unified diff that `git apply` accepts."""
