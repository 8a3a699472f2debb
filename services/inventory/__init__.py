"""Inventory: SKU stock, flash-sale allocations and holds. Publishes inventory.events."""
