"""Built-in reproductions of the papers' claims."""
