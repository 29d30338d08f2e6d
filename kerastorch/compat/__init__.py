"""Compatibility forms of other libraries' APIs, mapped onto kerastorch's in one place."""
