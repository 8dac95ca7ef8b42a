"""The HTTP server: uvicorn's httptools protocol with the limits a registry on the open
network needs, and zero-copy file bodies offered to the app as an ASGI extension.

Everything uvicorn-specific lives in this package; the app only sees ASGI (`scope
["extensions"]`), so it runs unchanged, just slower, under any other server.
"""
