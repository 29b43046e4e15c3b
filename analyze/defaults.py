"""Defaults shared by the statistics and the command line, written once."""

CONFIDENCE = 0.95  # level of every interval (bootstrap BCa, Fisher-z, rank belts) unless --confidence says otherwise
