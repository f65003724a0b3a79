"""The ``dltricks`` command; one module per group of subcommands."""
