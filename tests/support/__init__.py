"""Helpers shared by test suites (PKI, subprocess helpers); not tests themselves."""
