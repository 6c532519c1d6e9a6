"""Fault injection: planted links, torn logs, kills, full and read-only disks, signals (issue 21)."""
