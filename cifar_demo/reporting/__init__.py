"""Figures, tables, reports and exports: what the library's results look like on a page or on disk."""
