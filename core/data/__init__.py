"""Datasets: the built-in ones, image folders and zips, and uploads."""
