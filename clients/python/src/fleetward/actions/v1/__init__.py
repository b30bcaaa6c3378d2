"""Fleetward protobuf package (generated modules live beside this file)."""
