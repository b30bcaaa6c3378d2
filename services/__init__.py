"""Fleetward services: the action service and the policy service."""
