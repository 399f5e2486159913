"""Local stand-ins for the vendors' APIs on loopback: real paths, auth, bodies, limits and errors."""
