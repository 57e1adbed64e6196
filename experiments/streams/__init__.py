"""Edit streams and their readers, one module per data format."""
