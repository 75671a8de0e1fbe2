"""modlib: build a shared Lmod module library from curated easystacks with EasyBuild."""

__version__ = "0.1.0"
