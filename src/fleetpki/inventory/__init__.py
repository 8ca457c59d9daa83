"""Inventory and operations: the admin REST API, the web dashboard, the fleet summary."""
