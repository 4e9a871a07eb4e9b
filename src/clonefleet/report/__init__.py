"""Reports: figures, tables and files a person reads."""
