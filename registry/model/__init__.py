"""The registry model: repositories, blobs, uploads, manifests, tags. It knows
nothing of HTTP; handlers call these functions and render what they return."""
