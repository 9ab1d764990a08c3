"""meterline tui."""
