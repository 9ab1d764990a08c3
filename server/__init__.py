"""meterline server."""
