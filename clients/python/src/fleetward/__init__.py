"""Fleetward: client library and generated gRPC stubs for the Fleetward control plane."""
