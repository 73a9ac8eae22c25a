"""dynlearn's built-in training tasks (entry-point group ``dynlearn.datasets``) and the experiment files of the
reproductions (``experiments/*.toml``)."""
