"""Image pruning and online garbage collection (OpenShift's ImagePruner semantics)."""
