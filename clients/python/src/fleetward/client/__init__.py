"""The hand-written Fleetward client: config, channel, errors, sync/async clients and the CLI."""
