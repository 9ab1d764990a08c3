"""The dashboard's widgets, one a module, each with its own CSS."""
