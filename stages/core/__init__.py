"""Modules shared by the stages: errors, params, table I/O, quarantine, text rules."""
