"""The operator console: a small web app over the action service.

See docs/architecture.md, "Operator console".

It talks to the action service only through ``fleetward.client``, forwarding the
signed-in user's own token, so it holds no privilege of its own: the policy decides
every click exactly as it decides a grpcurl call.
"""
