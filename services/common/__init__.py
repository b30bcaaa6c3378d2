"""Code shared by the action and policy services."""
