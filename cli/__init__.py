"""Command-line front ends of the toolkit; the scripts at the top of the repository call these."""
