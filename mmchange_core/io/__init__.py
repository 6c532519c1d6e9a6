"""File input/output helpers: atomic writes, raster reading and writing."""
