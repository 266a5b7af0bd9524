"""Reports: tables and figures built from a study's storage and run folders."""
