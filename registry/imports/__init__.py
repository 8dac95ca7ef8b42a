"""Images from other registries: credentials, imports, pull-through."""
