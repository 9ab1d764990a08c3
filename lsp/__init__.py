"""meterline lsp."""
