"""Kubernetes API machinery, as kubectl expects of any API server: object metadata, label
and field selectors, patches, tables, watch events, discovery and OpenAPI documents.
Pure functions and data: no HTTP and no database here."""
