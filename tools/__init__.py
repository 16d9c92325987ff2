"""Development tools shared by the tests and the documentation build (not part of the package)."""
